r"""GAN objectives on discriminator logits, per example (``[B]``).

The discriminator outputs logits ``l = D(x)`` of any shape ``[B, ...]``: a scalar per example
(``[B]``) or a PatchGAN map (``[B, H', W', 1]``). Every loss is computed elementwise and then
**averaged over the non-batch axes** (the patch map), so it returns ``[B]``; only the train step
averages over the batch. Weights (Rivera's 100x on both players) are the caller's business.

Three families, each with a discriminator side (a real and a fake term) and a generator side, all
minimised (``l_r = D(x)``, ``l_f = D(x_hat)``):

* ``"nonsaturating"``: real :math:`-\log\sigma(l_r)`, fake :math:`-\log(1-\sigma(l_f))`,
  generator :math:`-\log\sigma(l_f)`.
* ``"hinge"``: real :math:`\max(0, 1 - l_r)`, fake :math:`\max(0, 1 + l_f)`, generator :math:`-l_f`.
* ``"least_squares"``: real :math:`\tfrac12 (l_r - 1)^2`, fake :math:`\tfrac12 l_f^2`,
  generator :math:`\tfrac12 (l_f - 1)^2`.

Where they come from:

* ``"nonsaturating"`` (Goodfellow et al., 2014, the non-saturating generator loss): binary
  cross-entropy with logits, i.e. Keras' ``BinaryCrossentropy(from_logits=True)`` with targets 1
  (real) and 0 (fake), as in Rivera's code. Computed as ``softplus(-l) = -log sigmoid(l)`` and
  ``softplus(l) = -log(1 - sigmoid(l))`` (``jax.nn.softplus`` is stable: no overflow at
  ``|l| = 1e4``, exact linear tails, gradient ``-sigmoid(-l)``, never NaN).
* ``"hinge"`` (Lim & Ye, 2017; Miyato et al., 2018): the hinge discriminator and the linear
  generator loss of SN-GAN / BigGAN.
* ``"least_squares"`` (Mao et al., 2017, LSGAN with targets a=0, b=c=1, including the paper's 1/2).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks

KINDS = ("nonsaturating", "hinge", "least_squares")


class DiscriminatorTerms(NamedTuple):
    """Per-example discriminator loss terms (each ``[B]``, patch-averaged); the loss is ``real + fake``.

    Attributes:
      real: the term on real data, e.g. :math:`-\\log\\sigma(D(x))`.
      fake: the term on generated data, e.g. :math:`-\\log(1 - \\sigma(D(\\hat x)))`.
    """

    real: jax.Array
    fake: jax.Array


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}; got {kind!r}.")
    return kind


def _logits(name: str, logits: ArrayLike) -> jax.Array:
    if np.ndim(logits) < 1:
        raise ValueError(f"`{name}` must be [B, ...] (a batch axis first); got a scalar.")
    x = jnp.asarray(logits)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"`{name}` must be a floating array of logits; got dtype {x.dtype}.")
    _checks.check_finite(name, x)
    return x


def per_example_mean(x: ArrayLike) -> jax.Array:
    """``[B, ...] -> [B]``: the mean over every axis but the first (a ``[B]`` input is returned as is)."""
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"`x` must be [B, ...]; got a scalar (shape {x.shape}).")
    return jnp.mean(x, axis=tuple(range(1, x.ndim))) if x.ndim > 1 else x


def _real_term(l: jax.Array, kind: str) -> jax.Array:
    if kind == "nonsaturating":
        return jax.nn.softplus(-l)
    if kind == "hinge":
        return jax.nn.relu(1.0 - l)
    return 0.5 * jnp.square(l - 1.0)


def _fake_term(l: jax.Array, kind: str) -> jax.Array:
    if kind == "nonsaturating":
        return jax.nn.softplus(l)
    if kind == "hinge":
        return jax.nn.relu(1.0 + l)
    return 0.5 * jnp.square(l)


def _generator_term(l: jax.Array, kind: str) -> jax.Array:
    if kind == "nonsaturating":
        return jax.nn.softplus(-l)
    if kind == "hinge":
        return -l
    return 0.5 * jnp.square(l - 1.0)


def bce_with_logits(logits: ArrayLike, targets: ArrayLike) -> jax.Array:
    r"""Elementwise binary cross-entropy :math:`-t\log\sigma(l) - (1-t)\log(1-\sigma(l))` from logits.

    Computed as ``softplus(l) - t * l`` (equal to the above for every ``t``; stable for any ``l``).
    Shapes broadcast; no reduction. ``targets`` in [0, 1] (soft labels allowed).
    """
    l = _logits("logits", logits)
    t = jnp.asarray(targets, l.dtype)
    _checks.check_probability("targets", t)
    _checks.broadcast_shapes(logits=l, targets=t)
    return jax.nn.softplus(l) - t * l


def discriminator_real_loss(real_logits: ArrayLike, kind: str = "nonsaturating") -> jax.Array:
    """``[B]``: the discriminator's loss on real data, patch-averaged (table in the module docstring)."""
    return per_example_mean(_real_term(_logits("real_logits", real_logits), _check_kind(kind)))


def discriminator_fake_loss(fake_logits: ArrayLike, kind: str = "nonsaturating") -> jax.Array:
    """``[B]``: the discriminator's loss on generated data, patch-averaged."""
    return per_example_mean(_fake_term(_logits("fake_logits", fake_logits), _check_kind(kind)))


def discriminator_terms(
    real_logits: ArrayLike, fake_logits: ArrayLike, kind: str = "nonsaturating"
) -> DiscriminatorTerms:
    """Both discriminator terms, each ``[B]`` (``real_logits`` and ``fake_logits`` may differ in shape)."""
    return DiscriminatorTerms(discriminator_real_loss(real_logits, kind), discriminator_fake_loss(fake_logits, kind))


def discriminator_loss(real_logits: ArrayLike, fake_logits: ArrayLike, kind: str = "nonsaturating") -> jax.Array:
    """``[B]``: ``real + fake`` for paired batches (``x_i`` and its reconstruction ``x̂_i``).

    Raises:
      ValueError: if the two logit arrays have different batch sizes, a bad ``kind``, or non-finite logits.
    """
    terms = discriminator_terms(real_logits, fake_logits, kind)
    if terms.real.shape != terms.fake.shape:
        raise ValueError(
            f"`real_logits` and `fake_logits` must have the same batch size to be paired; got shapes "
            f"{np.shape(real_logits)} and {np.shape(fake_logits)} (use discriminator_terms for unpaired batches)."
        )
    return terms.real + terms.fake


def generator_loss(fake_logits: ArrayLike, kind: str = "nonsaturating") -> jax.Array:
    """``[B]``: the generator's loss on the discriminator's logits of generated data, patch-averaged."""
    return per_example_mean(_generator_term(_logits("fake_logits", fake_logits), _check_kind(kind)))
