"""Evaluation metrics: pure, jittable, chunked, shardable; they take callables, never models."""

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
from jaxvae.metrics.iw_nll import iw_log_likelihood, make_iw_log_likelihood, mean_and_stderr

__all__ = [
    "FactorVaeScore",
    "MigResult",
    "SapResult",
    "active_units",
    "factor_vae_score",
    "iw_log_likelihood",
    "make_iw_log_likelihood",
    "mean_and_stderr",
    "mutual_information_gap",
    "mutual_information_gap_discrete",
    "sap_score",
]
