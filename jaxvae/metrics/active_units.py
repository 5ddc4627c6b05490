r"""Active units (Burda et al., 2016, Sec. 5.2).

A latent unit ``u`` is active when its posterior mean varies across the data::

    A_u = Cov_x( E_{q(z|x)}[z_u] ) > threshold      (threshold = 0.01 in the paper)

Inactive units have posteriors that ignore ``x`` (usually collapsed onto the prior).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks


def active_units(posterior_means: ArrayLike, threshold: float = 0.01) -> tuple[int, jax.Array]:
    """Count active latent units.

    Args:
      posterior_means: ``[N, D]`` posterior means ``E_q[z | x_n]`` over a data set (N >= 2).
      threshold: activity threshold on the variance (Burda et al.: 0.01).

    Returns:
      ``(count, variances)``: the number of units with variance ``> threshold`` (a Python int)
      and the per-unit variances ``[D]`` over the N examples (unbiased, ``ddof=1``).

    Raises:
      ValueError: if ``posterior_means`` is not a finite ``[N, D]`` array with ``N >= 2``, or
        ``threshold`` is negative or not finite.
    """
    m = jnp.asarray(posterior_means)
    if m.ndim != 2 or m.shape[0] < 2:
        raise ValueError(f"`posterior_means` must have shape [N, D] with N >= 2; got shape {m.shape}.")
    if not jnp.issubdtype(m.dtype, jnp.floating):
        raise ValueError(f"`posterior_means` must be floating; got dtype {m.dtype}.")
    _checks.check_finite("posterior_means", m)
    if not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"`threshold` must be finite and >= 0; got {threshold!r}.")
    variances = jnp.var(m, axis=0, ddof=1)
    return int(jnp.sum(variances > threshold)), variances
