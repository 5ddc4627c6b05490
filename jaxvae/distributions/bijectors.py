r"""Bijectors with log-determinants: scaled sigmoid onto a box, softplus, softmax-centred simplex map.

Event convention: the **last axis is the event**. ``forward(u)`` maps ``[..., d]`` to ``[..., d]``
(``SoftmaxCentered``: ``[..., K-1]`` to ``[..., K]``), and ``forward_log_det_jacobian(u)`` returns
``[...]``: :math:`\log|\det \partial z / \partial u|` summed over the event axis, per example. Change of
variables for a base density ``p_u``: :math:`\log p_z(z) = \log p_u(u) - \text{fldj}(u)`.

For ``SoftmaxCentered`` the image is the open ``(K-1)``-simplex in ``R^K``; its density is taken with
respect to Lebesgue measure on the first ``K-1`` coordinates (the last one is ``1 - sum``), so
the Jacobian is the square ``(K-1) x (K-1)`` matrix :math:`\partial z_{1:K-1} / \partial u`.

References:
  I. Gemp, I. Durugkar, M. Parente, M. D. Dyar, S. Mahadevan, "Inverting variational
  autoencoders for improved generative accuracy" (``LogisticFlow``, App. A).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.distributions._math import same_rank


# ------------------------------------------------------------------------ scaled sigmoid
def scaled_sigmoid_log_det(u: ArrayLike, low: ArrayLike, high: ArrayLike) -> jax.Array:
    r""":math:`\sum_i [\log(b_i - a_i) + \log\sigma(u_i) + \log\sigma(-u_i)]` over the last axis.

    ``log_sigmoid(+-u)`` rather than ``log(sigma(u)(1 - sigma(u)))`` keeps it finite for large ``|u|``.
    """
    u, low, high = same_rank(u, low, high)
    terms = jnp.log(high - low) + jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u)
    return jnp.sum(jnp.broadcast_to(terms, jnp.broadcast_shapes(u.shape, low.shape, high.shape)), axis=-1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ScaledSigmoid:
    r"""Elementwise :math:`z = a + (b - a)\,\sigma(u)` from :math:`R^d` onto the open box :math:`(a, b)^d`.

    Gemp et al.'s ``LogisticFlow``. ``low``/``high`` broadcast against the event ``[..., d]`` (scalars
    are fine).

    Attributes:
      low: ``a``, finite.
      high: ``b``, finite, ``> low`` elementwise.

    Raises:
      ValueError: (eagerly) if ``high <= low`` anywhere (names ``high``), or values are non-finite.
    """

    low: jax.Array
    high: jax.Array

    def __post_init__(self):
        if not _checks.should_validate(self.low, self.high):
            return
        _checks.broadcast_shapes(low=self.low, high=self.high)
        _checks.check_finite("low", self.low)
        _checks.check_finite("high", self.high)
        lo, hi = _checks._host(self.low), _checks._host(self.high)
        if lo is not None and hi is not None and not np.all(hi > lo):
            raise ValueError(
                f"`high` must be > `low` elementwise (a non-empty box); got min(high - low) = {np.min(hi - lo)!r}."
            )

    def forward(self, u: ArrayLike) -> jax.Array:
        u, low, high = same_rank(u, self.low, self.high)
        return low + (high - low) * jax.nn.sigmoid(u)

    def inverse(self, z: ArrayLike) -> jax.Array:
        r""":math:`u = \log p - \log(1 - p)`, :math:`p = (z - a)/(b - a)`; the box faces map to :math:`\pm\infty`.

        Raises:
          ValueError: (eagerly) if ``z`` is outside the closed box or non-finite.
        """
        _checks.check_finite("z", z)
        zh = _checks._host(z)
        if zh is not None and _checks.is_concrete(self.low) and _checks.is_concrete(self.high):
            if np.any(zh < np.asarray(self.low)) or np.any(zh > np.asarray(self.high)):
                raise ValueError("`z` must lie inside the box [`low`, `high`].")
        z, low, high = same_rank(z, self.low, self.high)
        p = (z - low) / (high - low)
        return jnp.log(p) - jnp.log1p(-p)

    def forward_log_det_jacobian(self, u: ArrayLike) -> jax.Array:
        return scaled_sigmoid_log_det(u, self.low, self.high)

    def inverse_log_det_jacobian(self, z: ArrayLike) -> jax.Array:
        return -self.forward_log_det_jacobian(self.inverse(z))


# ------------------------------------------------------------------------------ softplus
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Softplus:
    r"""Elementwise :math:`z = \log(1 + e^u)` from :math:`R^d` onto :math:`(0, \infty)^d`.

    :math:`\log|dz/du| = \sum_i \log\sigma(u_i)`; inverse :math:`u = z + \log(1 - e^{-z})` (``expm1``).
    """

    def forward(self, u: ArrayLike) -> jax.Array:
        return jax.nn.softplus(u)

    def inverse(self, z: ArrayLike) -> jax.Array:
        """Raises ``ValueError`` (eagerly) unless ``z`` is finite and > 0."""
        _checks.check_positive("z", z)
        z = jnp.asarray(z)
        return z + jnp.log(-jnp.expm1(-z))

    def forward_log_det_jacobian(self, u: ArrayLike) -> jax.Array:
        return jnp.sum(jax.nn.log_sigmoid(u), axis=-1)

    def inverse_log_det_jacobian(self, z: ArrayLike) -> jax.Array:
        return -self.forward_log_det_jacobian(self.inverse(z))


# ---------------------------------------------------------------------- simplex (softmax)
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SoftmaxCentered:
    r"""Softmax-centred map :math:`z = \operatorname{softmax}([u, 0])` from :math:`R^{K-1}` onto the open
    simplex in :math:`R^K`.

    The Jacobian of :math:`z_{1:K-1}` w.r.t. :math:`u` is :math:`\operatorname{diag}(p) - p p^\top` with
    :math:`p = z_{1:K-1}`, whose determinant is :math:`\prod_{i \le K-1} p_i (1 - \sum p) = \prod_{i=1}^K z_i`:

    .. math:: \log|\det J| = \sum_{i=1}^{K} \log z_i = \sum_i \operatorname{log\_softmax}([u, 0])_i.

    Inverse: :math:`u_i = \log z_i - \log z_K`.
    """

    def _padded(self, u: ArrayLike) -> jax.Array:
        u = jnp.asarray(u)
        _checks.check_rank_at_least("u", u, 1, "[..., K-1]")
        return jnp.concatenate([u, jnp.zeros(u.shape[:-1] + (1,), u.dtype if u.dtype.kind == "f" else float)], -1)

    def forward(self, u: ArrayLike) -> jax.Array:
        """``[..., K-1] -> [..., K]``."""
        return jax.nn.softmax(self._padded(u), axis=-1)

    def inverse(self, z: ArrayLike) -> jax.Array:
        """``[..., K] -> [..., K-1]``. Raises ``ValueError`` (eagerly) unless ``z`` is finite, > 0, sums to 1."""
        _checks.check_rank_at_least("z", z, 1, "[..., K]")
        _checks.check_positive("z", z)
        zh = _checks._host(z)
        if zh is not None and not np.allclose(zh.sum(-1), 1.0, atol=1e-4 * zh.shape[-1]):
            raise ValueError("`z` must sum to 1 over the last axis (a point of the simplex).")
        log_z = jnp.log(jnp.asarray(z))
        return log_z[..., :-1] - log_z[..., -1:]

    def forward_log_det_jacobian(self, u: ArrayLike) -> jax.Array:
        return jnp.sum(jax.nn.log_softmax(self._padded(u), axis=-1), axis=-1)

    def inverse_log_det_jacobian(self, z: ArrayLike) -> jax.Array:
        return -self.forward_log_det_jacobian(self.inverse(z))
