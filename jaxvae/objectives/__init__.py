"""Objectives: pure functions of log-densities returning per-example ``[B]`` values.

Imports only jax, numpy and ``jaxvae.distributions`` (enforced by ``tests/test_layering.py``).
Submodules: ``elbo``, ``iwae``, ``semi_supervised``, ... (import the ones you need).
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

__all__ = [
    "ElboTerms",
    "LogSumExpState",
    "analytic_kl_terms",
    "chunked_logsumexp",
    "elbo",
    "importance_log_weights",
    "iwae_bound",
    "kl_mc_terms",
    "logsumexp_finalize",
    "logsumexp_init",
    "logsumexp_update",
    "mc_kl_terms",
    "streaming_iwae_bound",
    "sum_event",
]
