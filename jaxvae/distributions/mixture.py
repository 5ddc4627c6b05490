"""Mixture of diagonal Gaussians over a ``D``-dimensional event.

``MixtureNormal(logits, loc, scale)`` has ``C`` components; ``logits`` is ``[..., C]`` and
``loc``/``scale`` are ``[..., C, D]``. Its batch shape is the broadcast of ``logits.shape[:-1]``,
``loc.shape[:-2]`` and ``scale.shape[:-2]``; its event shape is ``(D,)``. So unlike
:class:`~jaxvae.distributions.normal.Normal`, ``log_prob`` reduces the last (event) axis:

.. math:: \\log q(x) = \\operatorname{logsumexp}_c
   \\Big[\\log\\pi_c + \\sum_d \\log N(x_d; \\mu_{cd}, \\sigma_{cd}^2)\\Big],
   \\qquad \\pi = \\operatorname{softmax}(\\text{logits}).

``sample`` is ancestral (component index from a categorical draw, then that component's
Gaussian), so its pathwise gradient reaches ``loc``/``scale`` but **not** the weights. For
gradients with respect to the weights use :meth:`MixtureNormal.expectation`, which sums over
components exactly and reparameterises within each component.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.distributions._math import lead
from jaxvae.distributions.normal import Normal, normal_log_prob
from jaxvae.typing import PRNGKey, Shape


def mixture_log_prob(x: ArrayLike, logits: ArrayLike, loc: ArrayLike, scale: ArrayLike) -> jax.Array:
    r"""Log-density of a diagonal Gaussian mixture.

    Args:
      x: ``[..., D]`` points; leading axes broadcast against the batch shape.
      logits: ``[..., C]`` unnormalised component log-weights.
      loc: ``[..., C, D]`` component means.
      scale: ``[..., C, D]`` component standard deviations (> 0).

    Returns:
      ``[...]``: :math:`\log \sum_c \pi_c \prod_d N(x_d; \mu_{cd}, \sigma_{cd}^2)`.

    Checks no values (a fast path for compiled code): use :class:`MixtureNormal` for checked input.
    """
    comp = component_log_prob(x, loc, scale)  # [..., C]
    log_w = jax.nn.log_softmax(logits, axis=-1)
    n = max(comp.ndim, jnp.ndim(log_w))
    return jax.nn.logsumexp(lead(log_w, n) + lead(comp, n), axis=-1)


def component_log_prob(x: ArrayLike, loc: ArrayLike, scale: ArrayLike) -> jax.Array:
    """``[..., C]`` log-densities of ``x [..., D]`` under each of the ``C`` diagonal Gaussians.

    Checks no values (a fast path for compiled code): use the class for checked input.
    """
    x = jnp.asarray(x)[..., None, :]  # [..., 1, D]
    n = max(x.ndim, jnp.ndim(loc), jnp.ndim(scale))
    return jnp.sum(normal_log_prob(lead(x, n), lead(loc, n), lead(scale, n)), axis=-1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MixtureNormal:
    """Mixture of ``C`` diagonal Gaussians on ``R^D``.

    Attributes:
      logits: ``[..., C]`` unnormalised log-weights, finite; ``pi = softmax(logits)``.
      loc: ``[..., C, D]`` component means, finite.
      scale: ``[..., C, D]`` component standard deviations, finite and > 0.

    Raises:
      ValueError: (eagerly, for concrete inputs) if ranks are too small, ``C`` differs between
        ``logits`` and ``loc``/``scale``, batch shapes do not broadcast, or values are
        non-finite / non-positive.
    """

    logits: jax.Array
    loc: jax.Array
    scale: jax.Array

    def __post_init__(self):
        _checks.arrays_from_sequences(self, "logits", "loc", "scale")
        if not _checks.should_validate(self.logits, self.loc, self.scale):
            return
        _checks.check_rank_at_least("logits", self.logits, 1, "[..., C]")
        _checks.check_rank_at_least("loc", self.loc, 2, "[..., C, D]")
        _checks.check_rank_at_least("scale", self.scale, 2, "[..., C, D]")
        c = np.shape(self.logits)[-1]
        for name, a in (("loc", self.loc), ("scale", self.scale)):
            if np.shape(a)[-2] != c:
                raise ValueError(
                    f"`{name}` must have C = {c} components on axis -2 to match `logits` "
                    f"{np.shape(self.logits)}; got shape {np.shape(a)}."
                )
        if np.shape(self.loc)[-1] != np.shape(self.scale)[-1]:
            raise ValueError(
                f"`loc` and `scale` must share the event size D; got {np.shape(self.loc)} and {np.shape(self.scale)}."
            )
        _checks.broadcast_shapes(
            logits=np.empty(np.shape(self.logits)[:-1]),
            loc=np.empty(np.shape(self.loc)[:-2]),
            scale=np.empty(np.shape(self.scale)[:-2]),
        )
        _checks.check_finite("logits", self.logits)
        _checks.check_finite("loc", self.loc)
        _checks.check_positive("scale", self.scale)

    # ------------------------------------------------------------------ shapes
    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(
            jnp.broadcast_shapes(jnp.shape(self.logits)[:-1], jnp.shape(self.loc)[:-2], jnp.shape(self.scale)[:-2])
        )

    @property
    def num_components(self) -> int:
        return jnp.shape(self.logits)[-1]

    @property
    def event_size(self) -> int:
        return jnp.shape(self.loc)[-1]

    def _params(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``log_w [*batch, C]``, ``loc, scale [*batch, C, D]`` broadcast to the batch shape."""
        b, c, d = self.batch_shape, self.num_components, self.event_size
        log_w = jnp.broadcast_to(jax.nn.log_softmax(self.logits, axis=-1), b + (c,))
        loc = jnp.broadcast_to(self.loc, b + (c, d))
        scale = jnp.broadcast_to(self.scale, b + (c, d))
        return log_w, loc, scale

    # ------------------------------------------------------------ parameters
    def log_weights(self) -> jax.Array:
        """``[..., C]`` log mixture weights ``log_softmax(logits)``."""
        return self._params()[0]

    def weights(self) -> jax.Array:
        """``[..., C]`` mixture weights ``softmax(logits)``."""
        return jnp.exp(self.log_weights())

    def components(self) -> Normal:
        """The components as an elementwise ``Normal`` of batch shape ``[..., C, D]``."""
        _, loc, scale = self._params()
        return Normal(loc, scale)

    # --------------------------------------------------------------- density
    def log_prob(self, x: ArrayLike) -> jax.Array:
        """Log-density of ``x [..., D]``; returns ``broadcast(x.shape[:-1], batch_shape)``.

        Raises:
          ValueError: if ``x`` does not end in ``D``, or (eagerly) if concrete ``x`` holds NaN.
        """
        if jnp.shape(x)[-1:] != (self.event_size,):
            raise ValueError(f"`x` must end in the event size D = {self.event_size}; got shape {jnp.shape(x)}.")
        _checks.check_not_nan("x", x)
        return mixture_log_prob(x, self.logits, self.loc, self.scale)

    def component_log_prob(self, x: ArrayLike) -> jax.Array:
        """``[..., C]`` log-densities of ``x [..., D]`` under each component (weights excluded)."""
        if jnp.shape(x)[-1:] != (self.event_size,):
            raise ValueError(f"`x` must end in the event size D = {self.event_size}; got shape {jnp.shape(x)}.")
        return component_log_prob(x, self.loc, self.scale)

    # ------------------------------------------------------------- sampling
    def sample_and_component(self, key: PRNGKey, sample_shape: Shape = ()) -> tuple[jax.Array, jax.Array]:
        """Ancestral sample and its component index.

        Returns:
          ``(x, c)``: ``x`` of shape ``sample_shape + batch_shape + (D,)`` and integer ``c`` of
          shape ``sample_shape + batch_shape``. ``x`` is reparameterised given ``c``.
        """
        shape = _checks.as_shape(sample_shape) + self.batch_shape
        log_w, loc, scale = self._params()
        k_c, k_eps = jax.random.split(key)
        c = jax.random.categorical(k_c, log_w, axis=-1, shape=shape)  # [*S, *batch]
        n = len(shape) + 2
        idx = jnp.broadcast_to(c[..., None, None], shape + (1, self.event_size))
        loc_c = jnp.take_along_axis(jnp.broadcast_to(lead(loc, n), shape + loc.shape[-2:]), idx, axis=-2)[..., 0, :]
        scale_c = jnp.take_along_axis(jnp.broadcast_to(lead(scale, n), shape + scale.shape[-2:]), idx, axis=-2)[
            ..., 0, :
        ]
        dtype = jnp.result_type(self.loc, self.scale, float)
        eps = jax.random.normal(k_eps, shape + (self.event_size,), dtype=dtype)
        return loc_c + scale_c * eps, c

    def sample(self, key: PRNGKey, sample_shape: Shape = ()) -> jax.Array:
        """Ancestral sample, shape ``sample_shape + batch_shape + (D,)``.

        The pathwise gradient reaches ``loc`` and ``scale`` only; the discrete component choice
        carries no gradient to ``logits`` (use :meth:`expectation` for that).
        """
        return self.sample_and_component(key, sample_shape)[0]

    def sample_per_component(self, key: PRNGKey, num_samples: int) -> jax.Array:
        r"""``num_samples`` reparameterised draws from *every* component.

        Returns:
          ``x [num_samples, C, *batch, D]`` with :math:`x_{s,c} = \mu_c + \sigma_c \epsilon_{s,c}`.
          The component axis sits in front of the batch axes, so ``x`` broadcasts against
          anything of batch shape ``[*batch]`` (e.g. ``q.log_prob(x)`` is ``[S, C, *batch]``).
        """
        _, loc, scale = self._params()
        loc, scale = jnp.moveaxis(loc, -2, 0), jnp.moveaxis(scale, -2, 0)  # [C, *batch, D]
        dtype = jnp.result_type(self.loc, self.scale, float)
        eps = jax.random.normal(key, (int(num_samples),) + loc.shape, dtype=dtype)
        return loc[None] + scale[None] * eps

    def expectation(self, key: PRNGKey, f: Callable[[jax.Array], jax.Array], num_samples: int) -> jax.Array:
        r"""Stratified estimate of :math:`E_q[f(x)] = \sum_c \pi_c E_{N(\mu_c, \sigma_c^2)}[f(x)]`.

        .. math:: \hat E = \sum_c \pi_c \frac1S \sum_s f(\mu_c + \sigma_c \epsilon_{s,c})

        The sum over components is exact, so the gradient reaches ``logits`` as well as ``loc``
        and ``scale`` (pathwise). Unbiased for any ``num_samples >= 1``.

        Args:
          key: PRNG key.
          f: maps points ``[..., D]`` to values ``[...]`` (reducing the last axis); it is called
            once on ``x [S, C, *batch, D]`` (see :meth:`sample_per_component`) and must return
            ``[S, C, *batch]``.
          num_samples: ``S``, draws per component.

        Returns:
          ``[*batch]`` estimate.
        """
        x = self.sample_per_component(key, num_samples)
        fx = f(x)
        if jnp.shape(fx) != x.shape[:-1]:
            raise ValueError(f"`f` must map [S, C, *batch, D] {x.shape} to [S, C, *batch]; got {jnp.shape(fx)}.")
        w = jnp.moveaxis(self.weights(), -1, 0)  # [C, *batch]
        return jnp.sum(w * jnp.mean(fx, axis=0), axis=0)

    # --------------------------------------------------------------- moments
    def mean(self) -> jax.Array:
        r"""``[..., D]``: :math:`m = \sum_c \pi_c \mu_c`."""
        log_w, loc, _ = self._params()
        return jnp.sum(jnp.exp(log_w)[..., None] * loc, axis=-2)

    def variance(self) -> jax.Array:
        r"""``[..., D]`` marginal variances: :math:`\sum_c \pi_c (\sigma_c^2 + (\mu_c - m)^2)` (no cancellation)."""
        log_w, loc, scale = self._params()
        m = self.mean()
        dev = loc - m[..., None, :]
        return jnp.sum(jnp.exp(log_w)[..., None] * (jnp.square(scale) + jnp.square(dev)), axis=-2)

    def moment_matched(self) -> Normal:
        """The diagonal Gaussian with the mixture's mean and marginal variances, batch ``[..., D]``."""
        return Normal(self.mean(), jnp.sqrt(self.variance()))
