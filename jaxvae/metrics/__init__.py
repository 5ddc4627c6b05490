"""Evaluation metrics: pure, jittable, chunked, shardable; they take callables, never models.

Submodules: ``iw_nll`` (importance-weighted NLL), ``active_units``, ``posterior`` (variance collapse,
aggregate-posterior KL), ``image_quality`` (Fréchet distance, KID, MAE, PSNR), ``mnist_features``
(the feature network of "MNIST-FID" / "MNIST-KID"), ``traversals`` (latent traversals,
interpolations, image grids).
"""

from jaxvae.metrics.active_units import active_units
from jaxvae.metrics.image_quality import (
    KIDResult,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
    kernel_inception_distance,
    mean_absolute_error,
    mmd2_unbiased,
    psnr,
)
from jaxvae.metrics.iw_nll import iw_log_likelihood, make_iw_log_likelihood, mean_and_stderr
from jaxvae.metrics.mnist_features import (
    FeatureNetRecipe,
    MnistFeatures,
    load_mnist_feature_net,
    mnist_fid,
    mnist_kid,
)
from jaxvae.metrics.posterior import AggregateKL, aggregate_posterior_kl, mean_posterior_variance
from jaxvae.metrics.traversals import image_grid, interpolate, latent_grid, latent_traversal, to_unit_range

__all__ = [
    "AggregateKL",
    "FeatureNetRecipe",
    "KIDResult",
    "MnistFeatures",
    "active_units",
    "aggregate_posterior_kl",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_statistics",
    "image_grid",
    "interpolate",
    "iw_log_likelihood",
    "kernel_inception_distance",
    "latent_grid",
    "latent_traversal",
    "load_mnist_feature_net",
    "make_iw_log_likelihood",
    "mean_absolute_error",
    "mean_and_stderr",
    "mean_posterior_variance",
    "mmd2_unbiased",
    "mnist_fid",
    "mnist_kid",
    "psnr",
    "to_unit_range",
]
