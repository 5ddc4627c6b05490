"""Evaluation metrics: pure, jittable, chunked, shardable; they take callables, never models.

Submodules: ``iw_nll`` (importance-weighted NLL), ``active_units``, ``posterior`` (variance collapse,
aggregate-posterior KL), ``image_quality`` (Fréchet distance, KID, MAE, PSNR), ``mnist_features``
(the feature network of "MNIST-FID" / "MNIST-KID"), ``traversals`` (latent traversals,
interpolations, image grids), ``disentanglement`` (MIG, group MIG, SAP, FactorVAE score), ``gaps``
(generalization, amortization and robustness gaps), ``ssim`` (SSIM, MS-SSIM), ``paired`` (paired seed
comparisons).
"""

from jaxvae.metrics.active_units import active_units
from jaxvae.metrics.disentanglement import (
    FactorVaeScore,
    MigResult,
    SapResult,
    factor_vae_score,
    mutual_information_gap,
    mutual_information_gap_discrete,
    sap_score,
)
from jaxvae.metrics.gaps import amortization_gap, generalization_gap, robustness_gap, skl_attack
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
from jaxvae.metrics.mnist_features import FeatureNetRecipe, MnistFeatures, load_mnist_feature_net, mnist_fid, mnist_kid
from jaxvae.metrics.paired import mean_std, paired_comparison, paired_p_values
from jaxvae.metrics.posterior import AggregateKL, aggregate_posterior_kl, mean_posterior_variance
from jaxvae.metrics.ssim import ms_ssim, ssim
from jaxvae.metrics.traversals import image_grid, interpolate, latent_grid, latent_traversal, to_unit_range

__all__ = [
    "AggregateKL",
    "FactorVaeScore",
    "FeatureNetRecipe",
    "KIDResult",
    "MigResult",
    "MnistFeatures",
    "SapResult",
    "active_units",
    "aggregate_posterior_kl",
    "amortization_gap",
    "factor_vae_score",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_statistics",
    "generalization_gap",
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
    "mean_std",
    "mmd2_unbiased",
    "mnist_fid",
    "mnist_kid",
    "ms_ssim",
    "mutual_information_gap",
    "mutual_information_gap_discrete",
    "paired_comparison",
    "paired_p_values",
    "psnr",
    "robustness_gap",
    "sap_score",
    "skl_attack",
    "ssim",
    "to_unit_range",
]
