"""Objectives: pure functions of log-densities returning per-example ``[B]`` values.

Imports only jax, numpy and ``jaxvae.distributions`` (enforced by ``tests/test_layering.py``).
Submodules: ``elbo``, ``iwae``, ``semi_supervised``, ``total_correlation`` (MWS/MSS estimators, beta-TCVAE
and beta-STCVAE), ``adversarial`` (GAN losses on logits), ``regularizers`` (Rivera's variance regulariser
and population KLs), ``diffusion`` (EDM's loss and sampler).
"""

from jaxvae.objectives.adversarial import (
    DiscriminatorTerms,
    discriminator_fake_loss,
    discriminator_loss,
    discriminator_real_loss,
    discriminator_terms,
    generator_loss,
)
from jaxvae.objectives.elbo import ElboTerms, analytic_kl_terms, elbo, kl_mc_terms, mc_kl_terms, sum_event
from jaxvae.objectives.iwae import (
    LogSumExpState,
    chunked_logsumexp,
    importance_log_weights,
    iwae_bound,
    logsumexp_finalize,
    logsumexp_init,
    logsumexp_update,
    streaming_iwae_bound,
)
from jaxvae.objectives.regularizers import (
    aggregate_posterior,
    per_sample_kl,
    population_kl,
    population_kl_mc,
    variance_regularizer,
)
from jaxvae.objectives.total_correlation import (
    MarginalLogDensities,
    TotalCorrelationTerms,
    beta_stcvae_objective,
    beta_tcvae_objective,
    group_slices,
    marginal_log_densities,
    mss_log_weights,
    total_correlation_terms,
)

__all__ = [
    "DiscriminatorTerms",
    "ElboTerms",
    "LogSumExpState",
    "MarginalLogDensities",
    "TotalCorrelationTerms",
    "aggregate_posterior",
    "analytic_kl_terms",
    "beta_stcvae_objective",
    "beta_tcvae_objective",
    "chunked_logsumexp",
    "discriminator_fake_loss",
    "discriminator_loss",
    "discriminator_real_loss",
    "discriminator_terms",
    "elbo",
    "generator_loss",
    "group_slices",
    "importance_log_weights",
    "iwae_bound",
    "kl_mc_terms",
    "logsumexp_finalize",
    "logsumexp_init",
    "logsumexp_update",
    "marginal_log_densities",
    "mc_kl_terms",
    "mss_log_weights",
    "per_sample_kl",
    "population_kl",
    "population_kl_mc",
    "streaming_iwae_bound",
    "sum_event",
    "total_correlation_terms",
    "variance_regularizer",
]
