"""Categorical distribution over ``C`` classes, parameterised by logits on the last axis.

``Categorical(logits)`` with ``logits`` of shape ``batch_shape + (C,)`` has batch shape
``logits.shape[:-1]``. Outcomes come in two forms with two explicit methods:

* indices (integer arrays of shape ``batch_shape``): ``sample``, ``log_prob``;
* one-hot vectors (float arrays of shape ``batch_shape + (C,)``): ``sample_one_hot``,
  ``log_prob_one_hot`` (which also accepts soft/probability vectors: it is ``sum(x * log pi)``).

All log-probabilities come from ``log_softmax(logits)``, finite for finite logits (no
``log(softmax)`` underflow at |logits| = 50).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.typing import PRNGKey, Shape


def _check_indices(x: ArrayLike, num_categories: int) -> None:
    if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
        raise ValueError(f"`x` must hold integer class indices; got dtype {jnp.result_type(x)}.")
    if _checks.is_concrete(x):
        a = np.asarray(x)
        if a.size and (a.min() < 0 or a.max() >= num_categories):
            raise ValueError(f"`x` must hold class indices in [0, {num_categories}); got range [{a.min()}, {a.max()}].")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Categorical:
    """Categorical with class probabilities ``softmax(logits, axis=-1)``.

    Attributes:
      logits: unnormalised log-probabilities, shape ``batch_shape + (C,)``, finite, ``C >= 1``.

    Raises:
      ValueError: (eagerly, for concrete inputs) if ``logits`` has rank 0 or is not finite.
    """

    logits: jax.Array

    def __post_init__(self):
        _checks.arrays_from_sequences(self, "logits")
        if not _checks.should_validate(self.logits):
            return
        _checks.check_rank_at_least("logits", self.logits, 1, "the last axis holds the C classes")
        if np.shape(self.logits)[-1] < 1:
            raise ValueError("`logits` must have at least one class on its last axis; got shape (..., 0).")
        _checks.check_finite("logits", self.logits)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(jnp.shape(self.logits)[:-1])

    @property
    def num_categories(self) -> int:
        return int(jnp.shape(self.logits)[-1])

    @property
    def log_probs(self) -> jax.Array:
        """Normalised log-probabilities ``log_softmax(logits)``, shape ``batch_shape + (C,)``."""
        return jax.nn.log_softmax(self.logits, axis=-1)

    @property
    def probs(self) -> jax.Array:
        """Class probabilities ``softmax(logits)``, shape ``batch_shape + (C,)``."""
        return jax.nn.softmax(self.logits, axis=-1)

    def sample(self, key: PRNGKey, sample_shape: Shape = ()) -> jax.Array:
        """Class indices (int32), shape ``sample_shape + batch_shape`` (Gumbel-max, not differentiable)."""
        shape = _checks.as_shape(sample_shape) + self.batch_shape
        return jax.random.categorical(key, self.logits, axis=-1, shape=shape)

    def sample_one_hot(self, key: PRNGKey, sample_shape: Shape = ()) -> jax.Array:
        """One-hot samples in the logits' float dtype, shape ``sample_shape + batch_shape + (C,)``."""
        dtype = jnp.result_type(self.logits, float)
        return jax.nn.one_hot(self.sample(key, sample_shape), self.num_categories, dtype=dtype)

    def log_prob(self, x: ArrayLike) -> jax.Array:
        r""":math:`\log\pi_x` for integer indices ``x``.

        Args:
          x: integer class indices in ``[0, C)``, shape broadcastable with ``batch_shape``.

        Returns:
          Array of shape ``broadcast(x.shape, batch_shape)``.

        Raises:
          ValueError: (eagerly) if ``x`` is not an integer array, a concrete ``x`` leaves ``[0, C)``,
            or the shapes do not broadcast.
        """
        _check_indices(x, self.num_categories)
        try:
            shape = tuple(np.broadcast_shapes(np.shape(x), self.batch_shape))
        except ValueError:
            raise ValueError(
                f"shapes do not broadcast: `x` {np.shape(x)}, batch shape of `logits` {self.batch_shape}."
            ) from None
        log_p = jnp.broadcast_to(self.log_probs, shape + (self.num_categories,))
        idx = jnp.broadcast_to(jnp.asarray(x), shape)[..., None]
        return jnp.take_along_axis(log_p, idx, axis=-1)[..., 0]

    def log_prob_one_hot(self, x: ArrayLike) -> jax.Array:
        r""":math:`\sum_c x_c \log\pi_c` for one-hot (or probability) vectors ``x``.

        Args:
          x: shape broadcastable with ``batch_shape + (C,)``; the last axis must have size ``C``.

        Returns:
          Array of shape ``broadcast(x.shape, logits.shape)[:-1]``.

        Raises:
          ValueError: (eagerly) if ``x``'s last axis is not ``C`` or the shapes do not broadcast.
        """
        _checks.check_rank_at_least("x", x, 1, "one-hot vectors on the last axis")
        if np.shape(x)[-1] != self.num_categories:
            raise ValueError(f"`x` must be one-hot with last axis {self.num_categories}; got shape {np.shape(x)}.")
        _checks.broadcast_shapes(x=x, logits=self.logits)
        x, log_p = jnp.broadcast_arrays(jnp.asarray(x, self.log_probs.dtype), self.log_probs)
        return jnp.sum(x * log_p, axis=-1)

    def mode(self) -> jax.Array:
        """Most probable class index, shape ``batch_shape``."""
        return jnp.argmax(self.logits, axis=-1)

    def entropy(self) -> jax.Array:
        r""":math:`H = -\sum_c \pi_c \log\pi_c`, shape ``batch_shape`` (nats)."""
        log_p = self.log_probs
        return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def kl_categorical_categorical(q: Categorical, p: Categorical) -> jax.Array:
    r""":math:`KL(q\|p) = \sum_c q_c(\log q_c - \log p_c)` on the last axis.

    Both sides use ``log_softmax``; exactly 0 for ``q == p``.

    Returns:
      Array of shape ``broadcast(q.batch_shape, p.batch_shape)``.

    Raises:
      ValueError: if ``q`` and ``p`` have different numbers of classes or batch shapes that do not
        broadcast.
    """
    if q.num_categories != p.num_categories:
        raise ValueError(
            f"`q` and `p` must have the same number of classes; got {q.num_categories} and {p.num_categories}."
        )
    _checks.broadcast_shapes(q=q.logits, p=p.logits)
    log_q, log_p = jnp.broadcast_arrays(q.log_probs, p.log_probs)
    return jnp.sum(jnp.exp(log_q) * (log_q - log_p), axis=-1)
