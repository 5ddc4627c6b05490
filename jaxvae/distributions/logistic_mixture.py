r"""Discretized mixture of logistics: the 8-bit image likelihood of PixelCNN++ (Salimans et al. 2017).

Every scalar ``x`` (one channel of one pixel, scaled to ``[-1, 1]``: ``x = k / 127.5 - 1`` for
``k in {0, ..., 255}``) has its own mixture of ``K`` logistics, discretised to bins of width
``2 / (num_bins - 1)`` centred on the grid, with the two edge bins absorbing the tails:

.. math::
   P(x) = \sum_k \pi_k \begin{cases}
     \sigma(a_k) & x = -1 \\
     \sigma(a_k) - \sigma(b_k) & \text{otherwise} \\
     1 - \sigma(b_k) & x = 1
   \end{cases}, \qquad a_k = \frac{x - \mu_k + h}{s_k},\; b_k = \frac{x - \mu_k - h}{s_k},\;
   h = \frac{1}{\text{num\_bins} - 1}.

**Channels are independent** here: the mixture indicator is per element (not shared across the
RGB channels of a pixel) and there are no autoregressive channel coefficients, so a ``[B, H, W, Ch]``
image takes parameters of shape ``[B, H, W, Ch, K]`` and ``log_prob`` returns ``[B, H, W, Ch]``
(sum the last three axes for a per-image value).

Numerics (no cancellation anywhere, unlike the reference's ``cdf_plus - cdf_min`` with a pdf
fallback at ``cdf_delta < 1e-5``): for :math:`a > b`,

.. math:: \log(\sigma(a) - \sigma(b)) = \log\sigma(a) + \log\sigma(-b) + \log(1 - e^{-(a-b)}),

with :math:`a - b = 2h/s`; when that width is tiny (:math:`< 10^{-3}`) the last term uses its
series :math:`\log(a-b) - (a-b)/2 + (a-b)^2/24` computed from ``log_scales`` directly (the
"pdf-width" regime). ``log_scales`` are clamped below at ``-30`` only to keep ``1/s`` finite in
float32; at that scale all mass already sits in one bin to float32 precision.

References:
  T. Salimans, A. Karpathy, X. Chen, D. P. Kingma, "PixelCNN++", ICLR 2017, Sec. 2.1.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.distributions._math import lead
from jaxvae.typing import PRNGKey, Shape

MIN_LOG_SCALE = -30.0
_SMALL_WIDTH = 1e-3


def _log_one_minus_exp_neg(delta: jax.Array, log_delta: jax.Array) -> jax.Array:
    r""":math:`\log(1 - e^{-\delta})` for :math:`\delta > 0`, with ``log_delta = log(delta)`` given exactly.

    Series below ``1e-3`` (error ~ delta^4 / 2880); ``log(-expm1(-delta))`` above. Double ``where``
    keeps the unused branch's gradient finite.
    """
    small = delta < _SMALL_WIDTH
    safe = jnp.where(small, 1.0, delta)
    series = log_delta - 0.5 * delta + jnp.square(delta) / 24.0
    return jnp.where(small, series, jnp.log(-jnp.expm1(-safe)))


def logistic_bin_log_prob(x: ArrayLike, mean: ArrayLike, log_scale: ArrayLike, *, num_bins: int = 256) -> jax.Array:
    """Elementwise log-probability of the bin at ``x`` under one discretised logistic (broadcasting).

    Checks no values (a fast path for compiled code): use the class for checked input.
    """
    h = 1.0 / (num_bins - 1)
    x, mean, log_scale = jnp.asarray(x), jnp.asarray(mean), jnp.asarray(log_scale)
    log_scale = jnp.maximum(log_scale, MIN_LOG_SCALE)
    inv_s = jnp.exp(-log_scale)
    centered = x - mean
    a = inv_s * (centered + h)  # upper bin edge, standardised
    b = inv_s * (centered - h)  # lower bin edge, standardised
    log_cdf_a = jax.nn.log_sigmoid(a)  # log F(upper)
    log_sf_b = jax.nn.log_sigmoid(-b)  # log (1 - F(lower))
    width = 2.0 * h * inv_s  # a - b
    log_width = math.log(2.0 * h) - log_scale
    mid = log_cdf_a + log_sf_b + _log_one_minus_exp_neg(width, log_width)
    return jnp.where(x < -1.0 + h, log_cdf_a, jnp.where(x > 1.0 - h, log_sf_b, mid))


def discretized_logistic_mixture_log_prob(
    x: ArrayLike, logit_probs: ArrayLike, means: ArrayLike, log_scales: ArrayLike, *, num_bins: int = 256
) -> jax.Array:
    r"""``[...]``: :math:`\log \sum_k \pi_k P_k(x)` for ``x [...]`` and parameters ``[..., K]``.

    Checks no values (a fast path for compiled code): use the class for checked input.
    """
    xk = jnp.asarray(x)[..., None]
    n = max(xk.ndim, jnp.ndim(logit_probs), jnp.ndim(means), jnp.ndim(log_scales))
    comp = logistic_bin_log_prob(lead(xk, n), lead(means, n), lead(log_scales, n), num_bins=num_bins)
    log_w = lead(jax.nn.log_softmax(logit_probs, axis=-1), n)
    return jax.nn.logsumexp(log_w + comp, axis=-1)


def bin_values(num_bins: int = 256, dtype=jnp.float32) -> jax.Array:
    """``[num_bins]`` grid ``-1 + 2 k / (num_bins - 1)``: the values ``log_prob`` is normalised over."""
    return jnp.linspace(-1.0, 1.0, num_bins, dtype=dtype)


def pixels_to_unit(pixels: ArrayLike, num_bins: int = 256) -> jax.Array:
    """Integer pixels ``{0, ..., num_bins - 1}`` to the ``[-1, 1]`` grid (float32)."""
    return jnp.asarray(pixels, jnp.float32) * (2.0 / (num_bins - 1)) - 1.0


def unit_to_pixels(x: ArrayLike, num_bins: int = 256) -> jax.Array:
    """``[-1, 1]`` values to the nearest integer bin index (int32), clipped to ``[0, num_bins - 1]``."""
    k = jnp.round((jnp.asarray(x) + 1.0) * (0.5 * (num_bins - 1)))
    return jnp.clip(k, 0, num_bins - 1).astype(jnp.int32)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DiscretizedLogisticMixture:
    """Per-element discretised mixture of ``K`` logistics on the ``[-1, 1]`` grid of ``num_bins`` values.

    Attributes:
      logit_probs: ``[..., K]`` unnormalised mixture log-weights, finite.
      means: ``[..., K]`` logistic locations (in ``[-1, 1]`` units; any finite value allowed).
      log_scales: ``[..., K]`` log of the logistic scales, finite (clamped below at -30).
      num_bins: static; 256 for 8-bit data.

    Raises:
      ValueError: (eagerly) if ``K`` differs between the arrays, batch shapes do not broadcast,
        values are non-finite, or ``num_bins < 2``.
    """

    logit_probs: jax.Array
    means: jax.Array
    log_scales: jax.Array
    num_bins: int = dataclasses.field(default=256, metadata=dict(static=True))

    def __post_init__(self):
        if not isinstance(self.num_bins, int) or self.num_bins < 2:
            raise ValueError(f"`num_bins` must be an int >= 2; got {self.num_bins!r}.")
        _checks.arrays_from_sequences(self, "logit_probs", "means", "log_scales")
        if not _checks.should_validate(self.logit_probs, self.means, self.log_scales):
            return
        for name, a in (("logit_probs", self.logit_probs), ("means", self.means), ("log_scales", self.log_scales)):
            _checks.check_rank_at_least(name, a, 1, "[..., K]")
        k = np.shape(self.logit_probs)[-1]
        for name, a in (("means", self.means), ("log_scales", self.log_scales)):
            if np.shape(a)[-1] != k:
                raise ValueError(
                    f"`{name}` must have K = {k} mixture components on the last axis to match "
                    f"`logit_probs` {np.shape(self.logit_probs)}; got shape {np.shape(a)}."
                )
        _checks.broadcast_shapes(logit_probs=self.logit_probs, means=self.means, log_scales=self.log_scales)
        _checks.check_finite("logit_probs", self.logit_probs)
        _checks.check_finite("means", self.means)
        _checks.check_finite("log_scales", self.log_scales)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        s = jnp.broadcast_shapes(jnp.shape(self.logit_probs), jnp.shape(self.means), jnp.shape(self.log_scales))
        return tuple(s[:-1])

    @property
    def num_components(self) -> int:
        return jnp.shape(self.logit_probs)[-1]

    def log_prob(self, x: ArrayLike) -> jax.Array:
        """Log-probability of the bins at ``x`` (values on the ``[-1, 1]`` grid), shape ``broadcast(x, batch)``.

        Off-grid ``x`` gets the mass of ``[x - h, x + h]`` (edge rules below ``-1 + h`` / above ``1 - h``).

        Raises:
          ValueError: (eagerly) if ``x`` is non-finite or outside ``[-1, 1]``.
        """
        _checks.check_finite("x", x)
        xh = _checks._host(x)
        if xh is not None and xh.size and (xh.min() < -1.0 or xh.max() > 1.0):
            raise ValueError(f"`x` must lie in [-1, 1]; got range [{xh.min()!r}, {xh.max()!r}].")
        return discretized_logistic_mixture_log_prob(
            x, self.logit_probs, self.means, self.log_scales, num_bins=self.num_bins
        )

    def bin_log_probs(self) -> jax.Array:
        """``[..., num_bins]`` log-probabilities of every bin (memory ``num_bins`` x batch)."""
        dtype = jnp.result_type(self.means, self.log_scales, float)
        v = bin_values(self.num_bins, dtype)  # [num_bins]
        grid = jnp.broadcast_to(v.reshape((-1,) + (1,) * len(self.batch_shape)), (self.num_bins,) + self.batch_shape)
        return jnp.moveaxis(self.log_prob(grid), 0, -1)

    def mean(self) -> jax.Array:
        """``[...]`` exact mean of the discretised distribution (sums over the bins)."""
        dtype = jnp.result_type(self.means, self.log_scales, float)
        v = bin_values(self.num_bins, dtype)
        return jnp.sum(jnp.exp(self.bin_log_probs()) * lead(v, len(self.batch_shape) + 1), axis=-1)

    def sample(self, key: PRNGKey, sample_shape: Shape = ()) -> jax.Array:
        """Exact sample on the grid, shape ``sample_shape + batch_shape``.

        Component from a categorical draw, a continuous logistic draw ``mu + s * logit(u)``, then
        rounding to the nearest grid value and clipping to ``[-1, 1]`` (which is exactly the bin law,
        edge bins included). Not differentiable (discrete output).
        """
        shape = _checks.as_shape(sample_shape) + self.batch_shape
        k = self.num_components
        n = len(shape) + 1
        full = shape + (k,)
        logits = jnp.broadcast_to(lead(self.logit_probs, n), full)
        means = jnp.broadcast_to(lead(self.means, n), full)
        log_scales = jnp.broadcast_to(lead(jnp.maximum(self.log_scales, MIN_LOG_SCALE), n), full)
        k_c, k_l = jax.random.split(key)
        c = jax.random.categorical(k_c, logits, axis=-1)[..., None]
        mu = jnp.take_along_axis(means, c, axis=-1)[..., 0]
        ls = jnp.take_along_axis(log_scales, c, axis=-1)[..., 0]
        dtype = jnp.result_type(self.means, self.log_scales, float)
        x = mu + jnp.exp(ls) * jax.random.logistic(k_l, shape, dtype=dtype)
        return pixels_to_unit(unit_to_pixels(x, self.num_bins), self.num_bins).astype(dtype)
