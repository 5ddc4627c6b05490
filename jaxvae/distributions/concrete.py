r"""Concrete (Gumbel-Softmax) relaxation of a Categorical, with temperature schedules.

``Concrete(logits, temperature)`` with ``logits`` of shape ``batch_shape + (C,)`` is the law of

.. math:: y = \mathrm{softmax}((\ell + g)/\tau), \qquad g_i \sim \mathrm{Gumbel}(0, 1)\ \text{iid},

a point on the simplex (Maddison, Mnih & Teh 2017; Jang, Gu & Poole 2017). Its
density with respect to Lebesgue measure on the first ``C - 1`` coordinates is, with
:math:`\pi = \mathrm{softmax}(\ell)`,

.. math:: \log q(y) = \log\Gamma(C) + (C-1)\log\tau + \sum_i \log\pi_i - (\tau+1)\sum_i \log y_i
          - C \log\sum_i \pi_i y_i^{-\tau}.

Numerics: at small temperatures entries of ``y`` underflow to exactly 0 in float32 (at
``tau = 0.05`` a gap of 5 in ``logits + g`` already gives ``y_i ~ e^{-100}``), so ``log y`` and the
density are computed from ``log y = log_softmax((logits + g)/tau)`` directly:
:meth:`Concrete.sample_log`, :meth:`Concrete.log_prob_log_sample` and
:meth:`Concrete.sample_and_log_prob` stay finite (values and gradients) down to ``tau = 0.05`` with
``|logits| = 50``. :meth:`Concrete.log_prob` takes ``y`` itself and is ``-inf`` where ``y`` has
underflowed.

The argmax of a sample has the Categorical law ``softmax(logits)`` at every temperature (Gumbel-max:
dividing by ``tau > 0`` does not change the argmax). :meth:`Concrete.sample_hard` is the
straight-through estimator ``one_hot(argmax y) + y - stop_gradient(y)``.

Temperature schedules are plain functions of the step (:func:`constant_temperature`,
:func:`exponential_decay_temperature`) returning ``f(step) -> tau``, usable inside ``jit``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.typing import PRNGKey, Shape

TemperatureSchedule = Callable[[ArrayLike], jax.Array]


def concrete_log_prob_log_sample(log_y: ArrayLike, logits: ArrayLike, temperature: ArrayLike) -> jax.Array:
    r"""Concrete log-density of :math:`y = e^{\log y}`, computed from :math:`\log y` (Maddison et al. 2017, eq. 8).

    .. math:: \log\Gamma(C) + (C-1)\log\tau + \sum_i (\log\pi_i - (\tau+1)\log y_i)
              - C\,\mathrm{logsumexp}_i(\log\pi_i - \tau\log y_i)

    Args:
      log_y: log of a point on the simplex, shape ``[..., C]``, broadcastable with ``logits``.
      logits: ``[..., C]``; only ``log_softmax(logits)`` matters.
      temperature: ``tau > 0``, shape broadcastable with ``logits.shape[:-1]``.

    Returns:
      Array of shape ``broadcast(log_y.shape, logits.shape)[:-1]`` (broadcast with ``temperature``).

    Checks no values (a fast path for compiled code): use :class:`Concrete` for checked input.
    """
    log_y = jnp.asarray(log_y)
    logits = jnp.asarray(logits)
    num_categories = logits.shape[-1]
    log_pi = jax.nn.log_softmax(logits, axis=-1)
    full = jnp.broadcast_shapes(log_y.shape, logits.shape, jnp.shape(temperature) + (1,))
    log_y, log_pi = jnp.broadcast_to(log_y, full), jnp.broadcast_to(log_pi, full)
    tau = jnp.broadcast_to(jnp.asarray(temperature, log_pi.dtype), full[:-1])
    tau_e = tau[..., None]
    return (
        math.lgamma(num_categories)
        + (num_categories - 1) * jnp.log(tau)
        + jnp.sum(log_pi - (tau_e + 1.0) * log_y, axis=-1)
        - num_categories * jax.nn.logsumexp(log_pi - tau_e * log_y, axis=-1)
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Concrete:
    """Concrete / Gumbel-Softmax distribution on the ``C``-simplex.

    Attributes:
      logits: ``batch_shape + (C,)``, finite; ``C >= 2``.
      temperature: ``tau > 0``, finite, shape broadcastable with ``logits.shape[:-1]`` (usually a
        scalar; a pytree leaf, so a traced schedule value does not recompile).

    Raises:
      ValueError: (eagerly, for concrete inputs) if ``logits`` has rank 0, fewer than 2 classes or
        non-finite values, if ``temperature`` is not finite and > 0, or if the shapes do not broadcast.
    """

    logits: jax.Array
    temperature: jax.Array

    def __post_init__(self):
        _checks.arrays_from_sequences(self, "logits", "temperature")
        if not _checks.should_validate(self.logits, self.temperature):
            return
        _checks.check_rank_at_least("logits", self.logits, 1, "the last axis holds the C classes")
        if np.shape(self.logits)[-1] < 2:
            raise ValueError(
                f"`logits` must have at least 2 classes on its last axis; got shape {np.shape(self.logits)}."
            )
        _checks.check_finite("logits", self.logits)
        _checks.check_positive("temperature", self.temperature)
        try:
            np.broadcast_shapes(np.shape(self.temperature), np.shape(self.logits)[:-1])
        except ValueError:
            raise ValueError(
                f"`temperature` {np.shape(self.temperature)} must broadcast with the batch shape of "
                f"`logits` {np.shape(self.logits)[:-1]}."
            ) from None

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(jnp.broadcast_shapes(jnp.shape(self.logits)[:-1], jnp.shape(self.temperature)))

    @property
    def num_categories(self) -> int:
        return int(jnp.shape(self.logits)[-1])

    @property
    def probs(self) -> jax.Array:
        """``softmax(logits)``: the argmax law, and the deterministic (evaluation-mode) relaxed value."""
        return jax.nn.softmax(self.logits, axis=-1)

    def _check_event(self, name: str, y: ArrayLike) -> None:
        _checks.check_rank_at_least(name, y, 1, "simplex points on the last axis")
        if np.shape(y)[-1] != self.num_categories:
            raise ValueError(f"`{name}` must have last axis {self.num_categories}; got shape {np.shape(y)}.")
        try:
            np.broadcast_shapes(np.shape(y)[:-1], self.batch_shape)
        except ValueError:
            raise ValueError(
                f"shapes do not broadcast: `{name}` {np.shape(y)}, batch shape {self.batch_shape}."
            ) from None

    def sample_log(self, key: PRNGKey, sample_shape: Shape = ()) -> jax.Array:
        r"""Reparameterised :math:`\log y = \mathrm{log\_softmax}((\ell + g)/\tau)`.

        Returns:
          Array of shape ``sample_shape + batch_shape + (C,)``, finite at any temperature > 0.
        """
        shape = _checks.as_shape(sample_shape) + self.batch_shape + (self.num_categories,)
        dtype = jnp.result_type(self.logits, self.temperature, float)
        gumbel = jax.random.gumbel(key, shape, dtype=dtype)
        logits = jnp.broadcast_to(jnp.asarray(self.logits, dtype), shape)
        tau = jnp.broadcast_to(jnp.asarray(self.temperature, dtype), shape[:-1])[..., None]
        return jax.nn.log_softmax((logits + gumbel) / tau, axis=-1)

    def sample(self, key: PRNGKey, sample_shape: Shape = ()) -> jax.Array:
        """Reparameterised relaxed one-hot ``y = exp(sample_log(key))``, shape ``sample_shape + batch_shape + (C,)``."""
        return jnp.exp(self.sample_log(key, sample_shape))

    def sample_hard(self, key: PRNGKey, sample_shape: Shape = ()) -> jax.Array:
        """Straight-through sample: the value is ``one_hot(argmax y)``, the gradient that of ``y``.

        ``one_hot(argmax y) + y - stop_gradient(y)``, shape ``sample_shape + batch_shape + (C,)``.
        The forward value is exactly one-hot; the argmax has the law ``softmax(logits)``.
        """
        log_y = self.sample_log(key, sample_shape)
        y = jnp.exp(log_y)
        hard = jax.nn.one_hot(jnp.argmax(log_y, axis=-1), self.num_categories, dtype=y.dtype)
        return hard + (y - jax.lax.stop_gradient(y))

    def log_prob(self, y: ArrayLike) -> jax.Array:
        """Concrete log-density of simplex points ``y``; shape ``broadcast(y.shape[:-1], batch_shape)``.

        The support is the open simplex: a point with an entry ``<= 0`` (e.g. a sample whose entry
        underflowed to 0) scores ``-inf``, with a zero gradient. (The formula itself would give
        ``inf - inf = NaN`` there, since ``log y_i = -inf`` enters both sums.) Prefer
        :meth:`log_prob_log_sample` for samples drawn at low temperature. Eagerly, a ``y`` off the
        simplex (NaN, a negative entry, a sum off 1 by more than 1e-4) is an error; under ``jit`` only
        entries ``<= 0`` are detected (``-inf``) and the sum is not checked.

        Raises:
          ValueError: if the last axis of ``y`` is not ``C`` or the shapes do not broadcast; (eagerly) if
            concrete ``y`` is off the simplex.
        """
        self._check_event("y", y)
        _checks.check_simplex("y", y)
        y = jnp.asarray(y)
        inside = y > 0
        log_y = jnp.where(inside, jnp.log(jnp.where(inside, y, 1.0)), 0.0)  # double where: no NaN gradient
        log_p = concrete_log_prob_log_sample(log_y, self.logits, self.temperature)
        return jnp.where(jnp.all(inside, axis=-1), log_p, -jnp.inf)

    def log_prob_log_sample(self, log_y: ArrayLike) -> jax.Array:
        """Concrete log-density of ``y = exp(log_y)``, from ``log_y`` (finite even where ``y`` underflows).

        Args:
          log_y: ``[..., C]``, e.g. from :meth:`sample_log`.

        Returns:
          Array of shape ``broadcast(log_y.shape[:-1], batch_shape)``; see
          :func:`concrete_log_prob_log_sample`.
        """
        self._check_event("log_y", log_y)
        _checks.check_not_nan("log_y", log_y)
        return concrete_log_prob_log_sample(log_y, self.logits, self.temperature)

    def sample_and_log_prob(self, key: PRNGKey, sample_shape: Shape = ()) -> tuple[jax.Array, jax.Array]:
        """A reparameterised sample and its log-density, computed in log space.

        Returns:
          ``(y, log_q)`` with shapes ``sample_shape + batch_shape + (C,)`` and
          ``sample_shape + batch_shape``.
        """
        log_y = self.sample_log(key, sample_shape)
        return jnp.exp(log_y), concrete_log_prob_log_sample(log_y, self.logits, self.temperature)


def _check_scalar_positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a real number; got {value!r}.") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"`{name}` must be finite and > 0; got {value!r}.")
    return v


def constant_temperature(tau: float) -> TemperatureSchedule:
    """Schedule ``f(step) = tau`` (Gemp et al.'s code uses ``tau = 1``).

    Raises:
      ValueError: if ``tau`` is not finite and > 0.
    """
    tau = _check_scalar_positive("tau", tau)

    def schedule(step: ArrayLike) -> jax.Array:
        return jnp.full(jnp.shape(step), tau, dtype=jnp.result_type(float))

    return schedule


def exponential_decay_temperature(tau0: float, rate: float, floor: float, decay_steps: int = 1) -> TemperatureSchedule:
    r"""Schedule :math:`\tau(t) = \max(\text{floor}, \tau_0\,\text{rate}^{t/\text{decay\_steps}})`.

    Continuous (not staircase) decay, computed as ``tau0 * exp(log(rate) * t / decay_steps)``. Jang
    et al.'s ``max(0.5, exp(-r t))`` is ``exponential_decay_temperature(1.0, math.exp(-r), 0.5)``.

    Args:
      tau0: temperature at step 0, > 0.
      rate: multiplicative decay per ``decay_steps`` steps, in (0, 1].
      floor: lower bound, in (0, tau0].
      decay_steps: positive int.

    Returns:
      ``f(step) -> tau`` (float array of ``step``'s shape), jit-safe for traced ``step``.

    Raises:
      ValueError: naming the argument if any is out of range.
    """
    tau0 = _check_scalar_positive("tau0", tau0)
    rate = _check_scalar_positive("rate", rate)
    floor = _check_scalar_positive("floor", floor)
    if rate > 1.0:
        raise ValueError(f"`rate` must lie in (0, 1] (a decay); got {rate!r}.")
    if floor > tau0:
        raise ValueError(f"`floor` must be <= `tau0` ({tau0!r}); got {floor!r}.")
    if isinstance(decay_steps, bool) or not isinstance(decay_steps, (int, np.integer)) or decay_steps < 1:
        raise ValueError(f"`decay_steps` must be a positive int; got {decay_steps!r}.")
    log_rate = math.log(rate)

    def schedule(step: ArrayLike) -> jax.Array:
        t = jnp.asarray(step, dtype=jnp.result_type(float))
        return jnp.maximum(floor, tau0 * jnp.exp(log_rate * t / decay_steps))

    return schedule
