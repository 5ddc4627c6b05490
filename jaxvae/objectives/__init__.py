"""Objectives: pure functions of log-densities returning per-example ``[B]`` values.

Imports only jax, numpy and ``jaxvae.distributions`` (enforced by ``tests/test_layering.py``).
Submodules: ``elbo``, ``iwae``, ``semi_supervised``, ``total_correlation``, ... (import the ones you need).
"""

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
    "ElboTerms",
    "LogSumExpState",
    "MarginalLogDensities",
    "TotalCorrelationTerms",
    "analytic_kl_terms",
    "beta_stcvae_objective",
    "beta_tcvae_objective",
    "chunked_logsumexp",
    "elbo",
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
    "streaming_iwae_bound",
    "sum_event",
    "total_correlation_terms",
]
