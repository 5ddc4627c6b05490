"""Evaluation metrics: pure, jittable, chunked, shardable; they take callables, never models."""

from jaxvae.metrics.active_units import active_units
from jaxvae.metrics.iw_nll import iw_log_likelihood, make_iw_log_likelihood, mean_and_stderr

__all__ = ["active_units", "iw_log_likelihood", "make_iw_log_likelihood", "mean_and_stderr"]
