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
from jaxvae.metrics.gaps import amortization_gap, generalization_gap, robustness_gap, skl_attack
from jaxvae.metrics.iw_nll import iw_log_likelihood, make_iw_log_likelihood, mean_and_stderr
from jaxvae.metrics.paired import mean_std, paired_comparison, paired_p_values
from jaxvae.metrics.ssim import ms_ssim, ssim

__all__ = [
    "FactorVaeScore",
    "MigResult",
    "SapResult",
    "active_units",
    "amortization_gap",
    "factor_vae_score",
    "generalization_gap",
    "iw_log_likelihood",
    "make_iw_log_likelihood",
    "mean_and_stderr",
    "mean_std",
    "ms_ssim",
    "mutual_information_gap",
    "mutual_information_gap_discrete",
    "paired_comparison",
    "paired_p_values",
    "robustness_gap",
    "sap_score",
    "skl_attack",
    "ssim",
]
