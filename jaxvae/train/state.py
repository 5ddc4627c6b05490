"""Training state and the loss-function contract every model implements.

A model plugs into the engine by writing one function::

    def loss_fn(params, model_state, batch, key) -> LossOutput

- ``params``: the Linen ``params`` collection (a pytree).
- ``model_state``: every other mutable Linen collection (e.g. ``{"batch_stats": ...}``), ``{}``
  for models without one. The loss returns the updated value in ``LossOutput.model_state``.
- ``batch``: a dict of arrays whose leading axis is the (per-step, global) batch.
- ``key``: the step key, ``jax.random.fold_in(state.key, state.step)``, made by the engine.

A loss that follows a schedule (a KL warm-up, a Concrete temperature) declares a keyword ``step``,
``loss_fn(params, model_state, batch, key, *, step=0)``: the engine passes ``state.step`` (an int32
scalar, the number of steps taken before this one; traced, so the schedule must be written in jax,
e.g. :func:`jaxvae.distributions.concrete.exponential_decay_temperature`). Losses without the keyword
are called as above.

and, for evaluation, ``eval_fn(params, model_state, batch, key) -> dict[str, Array[B]]``
(per-example values; the engine reduces them).

A two-player model (a VAE-GAN) returns :class:`AdversarialLossOutput` instead, with
``params = {generator: ..., discriminator: ...}`` (:mod:`jaxvae.train.adversarial`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax

from jaxvae.typing import PRNGKey, PyTree


class LossOutput(NamedTuple):
    """What a ``loss_fn`` returns.

    Attributes:
      loss: scalar to minimise (the batch mean of the per-example objective).
      metrics: dict of scalars to log (batch means).
      model_state: updated non-parameter collections; the input value when nothing changes.
    """

    loss: jax.Array
    metrics: dict[str, jax.Array]
    model_state: PyTree


class TrainState(NamedTuple):
    """Everything a step reads and writes; a pytree, so it is checkpointed and sharded as one.

    Attributes:
      step: int32 scalar, number of steps taken (applied or skipped).
      params: model parameters.
      model_state: non-parameter collections (batch statistics); ``{}`` when none.
      opt_state: optax state.
      key: PRNG key of the run; step ``t`` uses ``fold_in(key, t)``.
      skipped: int32 scalar, number of steps whose update was non-finite and not applied.
    """

    step: jax.Array
    params: PyTree
    model_state: PyTree
    opt_state: PyTree
    key: PRNGKey
    skipped: jax.Array


class AdversarialLossOutput(NamedTuple):
    """What a two-player ``loss_fn`` returns (:mod:`jaxvae.train.adversarial`).

    Attributes:
      gen_loss: scalar minimised over the generator's parameters (``params[players[0]]``).
      disc_loss: scalar minimised over the discriminator's parameters (``params[players[1]]``).
      metrics: dict of scalars to log (batch means).
      model_state: updated non-parameter collections (the input value when nothing changes).
    """

    gen_loss: jax.Array
    disc_loss: jax.Array
    metrics: dict[str, jax.Array]
    model_state: PyTree


LossFn = Callable[[PyTree, PyTree, dict, PRNGKey], LossOutput]
EvalFn = Callable[[PyTree, PyTree, dict, PRNGKey], dict[str, jax.Array]]
