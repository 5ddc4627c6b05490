"""Diagonal (elementwise) Normal distribution and its closed-form KL.

``Normal(loc, scale)`` has batch shape ``broadcast(loc.shape, scale.shape)`` and no event
dimensions: ``log_prob`` keeps the input shape; objectives sum over event axes explicitly.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.distributions._math import HALF_LOG_2PI
from jaxvae.typing import PRNGKey, Shape


def _broadcast(*arrays: ArrayLike) -> list[jax.Array]:
    """Broadcast to a common shape explicitly (sample axes lead; rank promotion may be "raise")."""
    shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in arrays))
    return [jnp.broadcast_to(a, shape) for a in arrays]


def normal_log_prob(x: ArrayLike, loc: ArrayLike, scale: ArrayLike) -> jax.Array:
    r"""Elementwise :math:`\log N(x; \mu, \sigma^2) = -\tfrac12 ((x-\mu)/\sigma)^2 - \log\sigma - \tfrac12\log 2\pi`.

    Checks no values (a fast path for compiled code): use the class for checked input.
    """
    x, loc, scale = _broadcast(x, loc, scale)
    z = (x - loc) / scale
    return -0.5 * jnp.square(z) - jnp.log(scale) - HALF_LOG_2PI


def normal_log_prob_logvar(x: ArrayLike, loc: ArrayLike, log_var: ArrayLike) -> jax.Array:
    """Elementwise Normal log-density parameterised by ``log_var = log sigma^2`` (no exp/log round trip).

    Checks no values (a fast path for compiled code): use the class for checked input.
    """
    x, loc, log_var = _broadcast(x, loc, log_var)
    return -0.5 * (jnp.square(x - loc) * jnp.exp(-log_var) + log_var) - HALF_LOG_2PI


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Normal:
    """Elementwise Normal(loc, scale**2).

    Attributes:
      loc: mean, any shape.
      scale: standard deviation, > 0, broadcastable with ``loc``.

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
        return jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.scale))

    def sample(self, key: PRNGKey, sample_shape: Shape = ()) -> jax.Array:
        """Reparameterised sample ``loc + scale * eps``, shape ``sample_shape + batch_shape``."""
        shape = _checks.as_shape(sample_shape) + self.batch_shape
        dtype = jnp.result_type(self.loc, self.scale, float)
        eps = jax.random.normal(key, shape, dtype=dtype)
        # Broadcast explicitly: sample_shape adds leading axes (rank promotion may be set to "raise").
        return jnp.broadcast_to(self.loc, shape) + jnp.broadcast_to(self.scale, shape) * eps

    def log_prob(self, x: ArrayLike) -> jax.Array:
        """Elementwise log-density, shape ``broadcast(x.shape, batch_shape)``.

        Raises:
          ValueError: (eagerly) if concrete ``x`` holds NaN or the shapes do not broadcast.
        """
        _checks.broadcast_shapes(x=x, **{"loc/scale": jnp.empty(self.batch_shape, jnp.bool_)})
        _checks.check_not_nan("x", x)
        return normal_log_prob(x, self.loc, self.scale)

    def mean(self) -> jax.Array:
        return jnp.broadcast_to(self.loc, self.batch_shape)

    def variance(self) -> jax.Array:
        return jnp.broadcast_to(jnp.square(self.scale), self.batch_shape)

    def entropy(self) -> jax.Array:
        r""":math:`H = \tfrac12 \log(2\pi e \sigma^2)`, elementwise."""
        return jnp.broadcast_to(jnp.log(self.scale) + HALF_LOG_2PI + 0.5, self.batch_shape)


def kl_normal_normal(q: Normal, p: Normal) -> jax.Array:
    r"""Elementwise :math:`KL(q\,\|\,p)` between Normals.

    .. math:: \log\frac{\sigma_p}{\sigma_q} + \frac{\sigma_q^2 + (\mu_q-\mu_p)^2}{2\sigma_p^2} - \frac12

    Written as ``0.5 * (r - 1 - log r) + 0.5 * d^2`` with ``r = (sigma_q/sigma_p)^2`` and
    ``d = (mu_q - mu_p)/sigma_p`` so that it is exactly zero for ``q == p``.

    Returns:
      Array of shape ``broadcast(q.batch_shape, p.batch_shape)``.

    Raises:
      ValueError: if the batch shapes do not broadcast (naming both).
    """
    shape = _checks.broadcast_batch(q, p)
    qs, ps = jnp.broadcast_to(q.scale, shape), jnp.broadcast_to(p.scale, shape)
    ratio = jnp.square(qs / ps)
    diff = (jnp.broadcast_to(q.loc, shape) - jnp.broadcast_to(p.loc, shape)) / ps
    return 0.5 * (ratio - 1.0 - jnp.log(ratio)) + 0.5 * jnp.square(diff)


def kl_normal_std(loc: ArrayLike, log_var: ArrayLike) -> jax.Array:
    r"""Elementwise :math:`KL(N(\mu, e^{v}) \| N(0, 1)) = \tfrac12(e^{v} + \mu^2 - 1 - v)`.

    The encoder-friendly form used by the VAEs (``log_var`` straight from the network). Checks no values.
    """
    return 0.5 * (jnp.exp(log_var) + jnp.square(loc) - 1.0 - log_var)
