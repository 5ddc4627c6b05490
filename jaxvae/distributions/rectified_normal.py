r"""Rectified Normal (rectified Gaussian): ``z = max(0, y)``, ``y ~ N(loc, scale^2)`` (Salimans, arXiv:1602.08734).

With :math:`a = \mu/\sigma`, the law of ``z`` is a point mass :math:`\Phi(-a)` at 0 (the "spike") plus
the Gaussian density :math:`N(z; \mu, \sigma^2)` on :math:`(0, \infty)` (the "slab", mass
:math:`\Phi(a)`). Densities are taken with respect to the mixed base measure
:math:`\delta_0 + \text{Lebesgue}(0, \infty)`:

.. math:: \log p(z) = 1[z = 0]\,\log\Phi(-a) + 1[z > 0]\,\log N(z; \mu, \sigma^2).

Both sides of a KL must use this same measure, so a sample exactly at 0 scores ``log Phi(-a)``.

Numerics: every ``Phi`` that is logged goes through ``log_ndtr`` (finite in float32 down to
``log Phi(-30) = -454``), ``phi/Phi`` through its log form, and products ``Phi log Phi`` through
``exp(l) * l``; values and gradients stay finite for ``loc/scale`` in [-30, 30] (units deep in the
spike included), e.g. ``loc`` in [-30, 30] with ``scale = 1`` or ``scale = 1e-3``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxvae.distributions import _checks, _math
from jaxvae.distributions.normal import normal_log_prob
from jaxvae.typing import PRNGKey, Shape


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RectifiedNormal:
    """Elementwise rectified Normal ``max(0, N(loc, scale**2))``.

    Attributes:
      loc: location of the underlying Normal, any shape, finite.
      scale: its standard deviation, > 0, broadcastable with ``loc``.

    Raises:
      ValueError: (eagerly, for concrete inputs) if ``scale`` is not finite and positive, ``loc``
        is not finite, or the shapes do not broadcast.
    """

    loc: jax.Array
    scale: jax.Array

    def __post_init__(self):
        _checks.arrays_from_sequences(self, "loc", "scale")
        if not _checks.should_validate(self.loc, self.scale):
            return
        _checks.broadcast_shapes(loc=self.loc, scale=self.scale)
        _checks.check_finite("loc", self.loc)
        _checks.check_positive("scale", self.scale)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.scale)))

    def _params(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(loc, scale, a = loc/scale)``, broadcast to ``batch_shape`` in a float dtype."""
        dtype = jnp.result_type(self.loc, self.scale, float)
        loc = jnp.broadcast_to(jnp.asarray(self.loc, dtype), self.batch_shape)
        scale = jnp.broadcast_to(jnp.asarray(self.scale, dtype), self.batch_shape)
        return loc, scale, loc / scale

    def sample(self, key: PRNGKey, sample_shape: Shape = ()) -> jax.Array:
        r"""Reparameterised ``relu(loc + scale * eps)``, shape ``sample_shape + batch_shape``.

        The pathwise gradient is ``(1, eps)`` where ``y > 0`` and 0 otherwise; it is unbiased for
        expectations of functions continuous at 0 (see :func:`kl_rectified_mc` for the jump of a
        log-density there).
        """
        shape = _checks.as_shape(sample_shape) + self.batch_shape
        loc, scale, _ = self._params()
        eps = jax.random.normal(key, shape, dtype=loc.dtype)
        loc, scale = jnp.broadcast_to(loc, shape), jnp.broadcast_to(scale, shape)
        return jax.nn.relu(loc + scale * eps)

    def log_prob(self, z: ArrayLike) -> jax.Array:
        """Log-density on the mixed measure: ``log Phi(-a)`` at 0, ``log N(z)`` above, ``-inf`` below.

        Under ``jit`` a ``z < 0`` scores ``-inf``; eagerly it is an error, as a NaN ``z`` is.

        Returns:
          Array of shape ``broadcast(z.shape, batch_shape)``.

        Raises:
          ValueError: (eagerly) if concrete ``z`` holds NaN or a negative value, or the shapes do not
            broadcast.
        """
        loc, scale, a = self._params()
        _checks.broadcast_shapes(z=z, **{"loc/scale": loc})
        _checks.check_nonnegative("z", z)
        z, loc, scale, a = jnp.broadcast_arrays(jnp.asarray(z, loc.dtype), loc, scale, a)
        slab = normal_log_prob(z, loc, scale)
        spike = _math.log_ndtr(-a)
        out = jnp.where(z > 0, slab, spike)
        return jnp.where(z < 0, -jnp.inf, out)

    def log_prob_zero(self) -> jax.Array:
        r""":math:`\log P(z = 0) = \log\Phi(-\mu/\sigma)` (stable), shape ``batch_shape``."""
        _, _, a = self._params()
        return _math.log_ndtr(-a)

    def prob_zero(self) -> jax.Array:
        r""":math:`P(z = 0) = \Phi(-\mu/\sigma)`, shape ``batch_shape``."""
        _, _, a = self._params()
        return _math.ndtr(-a)

    def mean(self) -> jax.Array:
        r""":math:`E[z] = \mu\Phi(a) + \sigma\varphi(a) = \sigma(a\Phi(a) + \varphi(a))`."""
        _, scale, a = self._params()
        return scale * (a * _math.ndtr(a) + _math.normal_pdf(a))

    def variance(self) -> jax.Array:
        r"""Variance, :math:`\sigma^2\{\Phi(a)[1 - m(a+m)] + \Phi(a)\Phi(-a)(a+m)^2\}`,
        with :math:`m = \varphi(a)/\Phi(a)`.

        The law of total variance over spike/slab (the slab is a truncated Normal with mean
        ``sigma (a + m)`` and variance ``sigma^2 (1 - m (a + m))``); equal to
        ``E[z^2] - E[z]^2`` with ``E[z^2] = (mu^2 + sigma^2) Phi(a) + mu sigma phi(a)`` but without
        subtracting two nearly equal numbers when ``a`` is negative.
        """
        _, scale, a = self._params()
        m = _math.inverse_mills_ratio(a)
        p_slab = _math.ndtr(a)
        slab_mean = a + m
        slab_var = 1.0 - m * slab_mean
        return jnp.square(scale) * p_slab * (slab_var + _math.ndtr(-a) * jnp.square(slab_mean))

    def entropy(self) -> jax.Array:
        r"""Entropy on the mixed measure (nats).

        .. math:: H = -\Phi(-a)\log\Phi(-a) + \tfrac12\Phi(a)\log(2\pi e\sigma^2) - \tfrac12 a\varphi(a)
        """
        _, scale, a = self._params()
        spike = -_math.xexpx(_math.log_ndtr(-a))
        slab = _math.ndtr(a) * (jnp.log(scale) + _math.HALF_LOG_2PI + 0.5) - 0.5 * a * _math.normal_pdf(a)
        return spike + slab


def kl_rectified_rectified(q: RectifiedNormal, p: RectifiedNormal) -> jax.Array:
    r"""Closed-form :math:`KL(q\|p)` between rectified Normals on the same mixed measure (Salimans, arXiv:1602.08734).

    With :math:`a = \mu_q/\sigma_q`, :math:`b = \mu_p/\sigma_p`, :math:`r = \sigma_q/\sigma_p`,
    :math:`d = (\mu_q - \mu_p)/\sigma_p`, the §4.2 formula rearranges to

    .. math:: \Phi(-a)[\log\Phi(-a) - \log\Phi(-b)] + \tfrac12\Phi(a)(r^2 - 1 - \log r^2 + d^2)
              + \tfrac12 a\varphi(a)(1 - r^2) + r d\,\varphi(a),

    where ``log Phi`` is ``log_ndtr``, ``r^2 - 1 - log r^2 = expm1(t) - t`` with ``t = log r^2``,
    and ``Phi(-a) * [...]`` is a finite number times a product that underflows cleanly to 0 (no
    ``0 * inf``). It is exactly 0 for ``q == p`` and tends to the Gaussian KL as ``mu_q -> +inf``.

    Returns:
      Array of shape ``broadcast(q.batch_shape, p.batch_shape)``.

    Raises:
      ValueError: if the batch shapes do not broadcast.
    """
    shape = _checks.broadcast_batch(q, p)
    lq, sq, a = (jnp.broadcast_to(v, shape) for v in q._params())
    lp, sp, b = (jnp.broadcast_to(v, shape) for v in p._params())
    log_r2 = 2.0 * (jnp.log(sq) - jnp.log(sp))
    r = sq / sp
    d = (lq - lp) / sp
    spike = _math.ndtr(-a) * (_math.log_ndtr(-a) - _math.log_ndtr(-b))
    pdf_a = _math.normal_pdf(a)
    slab = (
        0.5 * _math.ndtr(a) * (_math.expm1_minus_x(log_r2) + jnp.square(d))
        - 0.5 * a * pdf_a * jnp.expm1(log_r2)
        + r * d * pdf_a
    )
    return spike + slab


def kl_rectified_mc(
    key: PRNGKey,
    q: RectifiedNormal,
    p: RectifiedNormal,
    num_samples: int,
    *,
    boundary_correction: bool = True,
) -> jax.Array:
    r"""Monte Carlo :math:`KL(q\|p) \approx \frac1N\sum_n \log q(z_n) - \log p(z_n)`, ``z_n ~ q`` reparameterised.

    The value is unbiased. Its pathwise gradient needs one more term: ``h = log q - log p`` jumps at
    ``z = 0`` (spike log-mass vs slab log-density), and differentiating through ``relu`` misses the
    boundary term :math:`(h(0^+) - h(0))\,\nabla\Phi(a)`. With ``boundary_correction`` (default) it
    is added as the zero-valued surrogate ``stop_gradient(h(0+) - h(0)) * (Phi(a) - stop_gradient(Phi(a)))``,
    which leaves the value unchanged and makes the gradient unbiased (tested against the gradient
    of :func:`kl_rectified_rectified`). ``False`` gives the plain, biased pathwise gradient.

    Args:
      key: PRNG key.
      q, p: rectified Normals with broadcastable batch shapes.
      num_samples: ``N >= 1`` samples per element (static).
      boundary_correction: add the gradient-only boundary term (keyword-only).

    Returns:
      Array of shape ``broadcast(q.batch_shape, p.batch_shape)``.

    Raises:
      ValueError: if ``num_samples`` is not a positive int or the batch shapes do not broadcast.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int; got {num_samples!r}.")
    shape = _checks.broadcast_batch(q, p)
    lq, sq, a = (jnp.broadcast_to(v, shape) for v in q._params())
    q_full = RectifiedNormal(lq, sq)
    z = q_full.sample(key, (num_samples,))
    estimate = jnp.mean(q_full.log_prob(z) - p.log_prob(z), axis=0)
    if boundary_correction:
        lp, sp, b = (jnp.broadcast_to(v, shape) for v in p._params())
        jump_q = normal_log_prob(0.0, lq, sq) - _math.log_ndtr(-a)
        jump_p = normal_log_prob(0.0, lp, sp) - _math.log_ndtr(-b)
        jump = jax.lax.stop_gradient(jump_q - jump_p)
        p_slab = _math.ndtr(a)
        estimate = estimate + jump * (p_slab - jax.lax.stop_gradient(p_slab))
    return estimate
