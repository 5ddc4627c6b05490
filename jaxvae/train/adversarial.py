r"""The adversarial (two-player) train step: a generator and a discriminator in one ``TrainState``.

The model writes one function that runs the forward pass of both players and returns both losses::

    def loss_fn(params, model_state, batch, key) -> AdversarialLossOutput(gen_loss, disc_loss, metrics, model_state)

with ``params = {"vae": ..., "disc": ...}`` (any two player names, :data:`PLAYERS` by default) and
each loss a scalar (the batch mean). ``gen_loss`` is minimised over ``params["vae"]`` only and
``disc_loss`` over ``params["disc"]`` only: the engine differentiates each loss with respect to its
own player, so the model needs no ``stop_gradient`` across players. Each player has its own optax
optimizer (one ``opt_state`` per player, as ``optax.multi_transform`` would keep).

Two modes:

* ``"simultaneous"`` (Rivera's code: one forward pass, two gradient tapes, both optimizers step)::

      (L_G, L_D), vjp = vjp(loss_fn, params)           # one forward pass at (theta_G, theta_D)
      g_G = vjp((1, 0))["vae"];  g_D = vjp((0, 1))["disc"]
      theta_G' = theta_G + opt_G(g_G);  theta_D' = theta_D + opt_D(g_D)

  i.e. exactly ``grad(L_G)(theta)["vae"]`` and ``grad(L_D)(theta)["disc"]`` at the same point;
  under ``jit`` XLA removes the parts of each backward pass whose result is dropped (the
  discriminator-weight gradient of ``L_G``, the decoder gradient of ``L_D``).
* ``"alternating"`` (D then G): ``n_critic`` discriminator updates, each at the current
  parameters with key ``fold_in(k, i)`` (``i = 0..n_critic-1``) on the same batch, then one
  generator update at the updated discriminator with key ``fold_in(k, n_critic)``.

Non-finite skip, per player: a player's update is applied only when its loss, its gradient norm and
its new parameters and optimizer state are all finite; otherwise that player's parameters and
optimizer state keep their values bit for bit and its counter in
:attr:`AdversarialOptState.skipped` grows. ``model_state`` (batch statistics) is split the same way
when it is a dict keyed by player (its other entries follow both players). In ``"alternating"`` mode
each forward pass updates the collections of the player it trains only (the other player's batch
statistics keep their values, as a frozen Keras model's would). ``TrainState.skipped``
counts the steps in which at least one player's update was not applied, so
:func:`jaxvae.train.loop.fit`'s divergence stop works unchanged.

Everything else is the engine's: ``step(state, batch) -> (state, metrics)`` is a
:class:`~jaxvae.train.steps.StepFunction` (batch checks, donation, ``jit``, ``mesh`` data
parallelism with a replicated state), :func:`make_pmap_adversarial_step` is the ``jax.pmap`` form
(gradients, losses and batch statistics ``pmean``-ed over the device axis), and
:func:`adversarial_step_body` runs under :func:`jaxvae.train.multi.make_multi_step` for several
seeds in one program. The state is a plain :class:`~jaxvae.train.state.TrainState`, so ``fit``
checkpoints and resumes it exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvae.train.state import AdversarialLossOutput, TrainState
from jaxvae.train.steps import (
    StepFunction,
    _all_finite,
    _data_axis,
    _is_key,
    _mesh_check,
    _pmean_floats,
    check_compiler_options,
    create_train_state,
)
from jaxvae.typing import PRNGKey, PyTree

__all__ = [
    "MODES",
    "PLAYERS",
    "AdversarialLossOutput",
    "AdversarialOptState",
    "adversarial_step_body",
    "create_adversarial_state",
    "make_adversarial_step",
    "make_pmap_adversarial_step",
]

PLAYERS = ("vae", "disc")
MODES = ("simultaneous", "alternating")


class AdversarialOptState(NamedTuple):
    """``TrainState.opt_state`` of an adversarial state.

    Attributes:
      inner: ``{player: optax state}``, one optimizer state per player.
      skipped: ``{player: int32 scalar}``, how many of that player's updates were not applied.
    """

    inner: dict[str, PyTree]
    skipped: dict[str, jax.Array]


AdversarialLossFn = Callable[[PyTree, PyTree, Any, PRNGKey], AdversarialLossOutput]


def _check_players(players: Sequence[str]) -> tuple[str, str]:
    players = tuple(players)
    if len(players) != 2 or not all(isinstance(p, str) for p in players) or players[0] == players[1]:
        raise ValueError(f"`players` must be two distinct names (generator, discriminator); got {players!r}.")
    return players


def _check_optimizers(optimizers: Any, players: tuple[str, str]) -> dict:
    if not isinstance(optimizers, Mapping) or set(optimizers) != set(players):
        got = sorted(optimizers) if isinstance(optimizers, Mapping) else type(optimizers).__name__
        raise ValueError(f"`optimizers` must be a dict with one optax optimizer per player {players}; got {got}.")
    for p, tx in optimizers.items():
        if not (hasattr(tx, "init") and hasattr(tx, "update")):
            raise ValueError(f"`optimizers[{p!r}]` must be an optax.GradientTransformation; got {type(tx).__name__}.")
    return dict(optimizers)


def _check_params(params: Any, players: tuple[str, str]) -> None:
    if not isinstance(params, Mapping) or set(params) != set(players):
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"`params` must be a dict with exactly the players {players} as keys; got {got}.")


def create_adversarial_state(
    key: PRNGKey,
    params: Mapping[str, PyTree],
    model_state: PyTree,
    optimizers: Mapping[str, optax.GradientTransformation],
    *,
    players: Sequence[str] = PLAYERS,
) -> TrainState:
    """A fresh two-player :class:`TrainState` at step 0.

    Args:
      key: the run's PRNG key; step ``t`` uses ``fold_in(key, t)``.
      params: ``{generator: params, discriminator: params}`` keyed by ``players``.
      model_state: non-parameter collections, ideally ``{player: collections}`` (``{}`` or ``None`` for none).
      optimizers: ``{player: optax.GradientTransformation}``.
      players: ``(generator, discriminator)`` names (default ``("vae", "disc")``).

    Returns:
      ``TrainState(step=0, params, model_state, opt_state=AdversarialOptState(...), key, skipped=0)``.

    Raises:
      ValueError: if ``params`` or ``optimizers`` are not keyed by the two players, or ``key`` is not one key.
    """
    players = _check_players(players)
    _check_params(params, players)
    optimizers = _check_optimizers(optimizers, players)
    if not _is_key(key):
        raise ValueError(f"`key` must be one PRNG key; got {getattr(key, 'dtype', type(key).__name__)}.")
    base = create_train_state(key, dict(params), model_state, optax.identity())
    inner = {p: optimizers[p].init(base.params[p]) for p in players}
    skipped = {p: jnp.zeros((), jnp.int32) for p in players}
    return base._replace(opt_state=AdversarialOptState(inner, skipped))


def _call(loss_fn: AdversarialLossFn, params, model_state, batch, key) -> AdversarialLossOutput:
    out = loss_fn(params, model_state, batch, key)
    if not (isinstance(out, tuple) and len(out) == 4):
        raise ValueError(
            "the adversarial `loss_fn` must return AdversarialLossOutput(gen_loss, disc_loss, metrics, model_state); "
            f"got {type(out).__name__}."
        )
    out = AdversarialLossOutput(*out)
    for name in ("gen_loss", "disc_loss"):
        if jnp.shape(getattr(out, name)) != ():
            raise ValueError(
                f"`loss_fn` {name} must be a scalar (the batch mean); got shape {jnp.shape(getattr(out, name))}."
            )
    if not isinstance(out.metrics, dict):
        raise ValueError(f"`loss_fn` metrics must be a dict; got {type(out.metrics).__name__}.")
    for name, v in out.metrics.items():
        if jnp.shape(v) != ():
            raise ValueError(f"`loss_fn` metric {name!r} must be a scalar (batch mean); got shape {jnp.shape(v)}.")
    return out


def _forward_and_grads(loss_fn, params, model_state, batch, key, which: tuple[str, ...], players, axis_name):
    """One forward pass; the gradient of each requested player's own loss w.r.t. that player's params.

    Returns ``(out, {player: grad})`` with losses, metrics, model state and gradients ``pmean``-ed over
    ``axis_name`` when given.
    """

    def losses(p):
        out = _call(loss_fn, p, model_state, batch, key)
        return (out.gen_loss, out.disc_loss), out

    (gen_loss, disc_loss), vjp, out = jax.vjp(losses, params, has_aux=True)
    grads = {}
    for i, p in enumerate(players):
        if p in which:
            one, zero = jnp.ones_like(gen_loss), jnp.zeros_like(disc_loss)
            (g,) = vjp((one, zero) if i == 0 else (zero, one))
            grads[p] = g[p]
    if axis_name is not None:
        out, grads = _pmean_floats((out, grads), axis_name)
    return out, grads


def _gate_model_state(new, old, ok: dict[str, jax.Array], players, rest: jax.Array) -> PyTree:
    """Select ``new`` where ``ok[player]`` holds for that player's entry of a per-player dict
    ``model_state``, and where ``rest`` holds for its other entries (or for a state not keyed by player)."""
    if isinstance(new, Mapping) and isinstance(old, Mapping):
        return {
            k: jax.tree.map(lambda n, o, c=(ok[k] if k in players else rest): jnp.where(c, n, o), new[k], old[k])
            for k in new
        }
    return jax.tree.map(lambda n, o: jnp.where(rest, n, o), new, old)


def _update_player(optimizer, params, opt_state, grads, loss):
    """``(params', opt_state', applied, grad_norm)``: the gated update of one player."""
    grad_norm = optax.tree.norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def apply(_):
        updates, new_opt = optimizer.update(grads, opt_state, params)
        new = (optax.apply_updates(params, updates), new_opt)
        ok_new = _all_finite(new)
        return jax.tree.map(lambda n, o: jnp.where(ok_new, n, o), new, (params, opt_state)) + (ok_new,)

    def skip(_):
        return params, opt_state, jnp.array(False)

    new_params, new_opt, applied = jax.lax.cond(ok, apply, skip, None)
    return new_params, new_opt, applied, grad_norm


def adversarial_step_body(
    loss_fn: AdversarialLossFn,
    optimizers: Mapping[str, optax.GradientTransformation],
    state: TrainState,
    batch: Any,
    key: PRNGKey,
    *,
    mode: str = "simultaneous",
    n_critic: int = 1,
    players: Sequence[str] = PLAYERS,
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One two-player update of ``state`` on ``batch`` with step key ``key``, traced (no jit).

    The body of :func:`make_adversarial_step` (see the module docstring for the modes and the skip
    gates); pass it to :func:`jaxvae.train.multi.make_multi_step` for several seeds in one program.

    Returns:
      ``(new_state, metrics)``: the ``loss_fn`` metrics (of the generator's forward pass in
      ``"alternating"`` mode) plus ``gen_loss``, ``disc_loss``, ``loss`` (= ``gen_loss``),
      ``grad_norm_<player>``, ``skipped_<player>`` (cumulative) and ``skipped`` (steps with any skip).
    """
    gen, disc = players = _check_players(players)
    params, model_state = state.params, state.model_state
    inner, pskip = dict(state.opt_state.inner), state.opt_state.skipped
    applied, norms = {}, {}

    def apply_player(p, params, model_state_new, model_state_old, grads, loss):
        new_p, new_opt, ok, norm = _update_player(optimizers[p], params[p], inner[p], grads, loss)
        inner[p] = new_opt
        ok_p = {q: (ok if q == p else jnp.array(False)) for q in players}  # the other player's stats stay
        ms = _gate_model_state(model_state_new, model_state_old, ok_p, players, ok)
        return {**params, p: new_p}, ms, ok, norm

    if mode == "simultaneous":
        out, grads = _forward_and_grads(loss_fn, params, model_state, batch, key, players, players, axis_name)
        new_params = dict(params)
        for p, loss in ((gen, out.gen_loss), (disc, out.disc_loss)):
            new_params[p], inner[p], applied[p], norms[p] = _update_player(
                optimizers[p], params[p], inner[p], grads[p], loss
            )
        params = new_params
        both = applied[gen] & applied[disc]
        model_state = _gate_model_state(out.model_state, model_state, applied, players, both)
        metrics = dict(out.metrics)
        disc_loss = out.disc_loss
    elif mode == "alternating":
        d_ok = jnp.array(True)
        for i in range(n_critic):
            out, grads = _forward_and_grads(
                loss_fn, params, model_state, batch, jax.random.fold_in(key, i), (disc,), players, axis_name
            )
            params, model_state, ok, norms[disc] = apply_player(
                disc, params, out.model_state, model_state, grads[disc], out.disc_loss
            )
            d_ok = d_ok & ok
        applied[disc] = d_ok
        disc_loss = out.disc_loss
        out, grads = _forward_and_grads(
            loss_fn, params, model_state, batch, jax.random.fold_in(key, n_critic), (gen,), players, axis_name
        )
        params, model_state, applied[gen], norms[gen] = apply_player(
            gen, params, out.model_state, model_state, grads[gen], out.gen_loss
        )
        metrics = dict(out.metrics)
    else:
        raise ValueError(f"`mode` must be one of {MODES}; got {mode!r}.")

    pskip = {p: pskip[p] + jnp.where(applied[p], 0, 1).astype(pskip[p].dtype) for p in players}
    any_skip = ~(applied[gen] & applied[disc])
    skipped = state.skipped + any_skip.astype(state.skipped.dtype)
    new_state = TrainState(
        step=state.step + 1,
        params=params,
        model_state=model_state,
        opt_state=AdversarialOptState(inner, pskip),
        key=state.key,
        skipped=skipped,
    )
    metrics.update(gen_loss=out.gen_loss, disc_loss=disc_loss, loss=out.gen_loss, skipped=skipped)
    for p in players:
        metrics[f"grad_norm_{p}"] = norms[p]
        metrics[f"skipped_{p}"] = pskip[p]
    return new_state, metrics


def _check_mode(mode: str, n_critic: int) -> None:
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; got {mode!r}.")
    if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
        raise ValueError(f"`n_critic` must be a positive int (discriminator updates per step); got {n_critic!r}.")
    if mode == "simultaneous" and n_critic != 1:
        raise ValueError(f"`n_critic` applies to mode='alternating' only; got n_critic={n_critic} with 'simultaneous'.")


def make_adversarial_step(
    loss_fn: AdversarialLossFn,
    optimizers: Mapping[str, optax.GradientTransformation],
    *,
    mode: str = "simultaneous",
    n_critic: int = 1,
    players: Sequence[str] = PLAYERS,
    mesh: Mesh | None = None,
    donate: bool = True,
    jit: bool = True,
    compiler_options: Mapping[str, Any] | None = None,
) -> StepFunction:
    """Build the two-player ``step(state, batch) -> (state, metrics)`` (a state from :func:`create_adversarial_state`).

    Args:
      loss_fn: ``loss_fn(params, model_state, batch, key) -> AdversarialLossOutput``.
      optimizers: ``{player: optax.GradientTransformation}``.
      mode: ``"simultaneous"`` (both players from one forward pass) or ``"alternating"`` (D then G).
      n_critic: discriminator updates per step in ``"alternating"`` mode.
      players: ``(generator, discriminator)`` names, the keys of ``params``.
      mesh, donate, jit, compiler_options: as for :func:`jaxvae.train.steps.make_train_step` (with
        ``mesh`` the batch is split over its first axis and the state replicated).

    Returns:
      A :class:`~jaxvae.train.steps.StepFunction`; metrics as :func:`adversarial_step_body`.
    """
    if not callable(loss_fn):
        raise ValueError(f"`loss_fn` must be callable; got {type(loss_fn).__name__}.")
    players = _check_players(players)
    optimizers = _check_optimizers(optimizers, players)
    _check_mode(mode, n_critic)

    def step(state: TrainState, batch: Any):
        key = jax.random.fold_in(state.key, state.step)
        return adversarial_step_body(
            loss_fn, optimizers, state, batch, key, mode=mode, n_critic=n_critic, players=players
        )

    first_check = _mesh_check(mesh)
    transform = None
    if jit:
        kw: dict[str, Any] = {
            "donate_argnums": (0,) if donate else (),
            "compiler_options": check_compiler_options(compiler_options),
        }
        if mesh is not None:
            rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P(_data_axis(mesh)))
            kw.update(in_shardings=(rep, data), out_shardings=(rep, rep))
        transform = functools.partial(jax.jit, **kw)
    return StepFunction(step, transform, "adversarial_step", 1, first_check)


def make_pmap_adversarial_step(
    loss_fn: AdversarialLossFn,
    optimizers: Mapping[str, optax.GradientTransformation],
    *,
    mode: str = "simultaneous",
    n_critic: int = 1,
    players: Sequence[str] = PLAYERS,
    axis_name: str = "batch",
    donate: bool = True,
    devices: list | None = None,
) -> StepFunction:
    """The ``jax.pmap`` form: ``step(replicated_state, batch[n_dev, b, ...])``.

    Each device uses key ``fold_in(fold_in(state.key, state.step), axis_index)``; losses, metrics,
    model state and both players' gradients are ``pmean``-ed over ``axis_name`` before the (identical)
    updates. Use :func:`jaxvae.train.steps.replicate_for_pmap` / ``unreplicate`` for the state.
    """
    if not callable(loss_fn):
        raise ValueError(f"`loss_fn` must be callable; got {type(loss_fn).__name__}.")
    players = _check_players(players)
    optimizers = _check_optimizers(optimizers, players)
    _check_mode(mode, n_critic)

    def step(state: TrainState, batch: Any):
        key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), jax.lax.axis_index(axis_name))
        return adversarial_step_body(
            loss_fn, optimizers, state, batch, key, mode=mode, n_critic=n_critic, players=players, axis_name=axis_name
        )

    n_dev = len(devices) if devices is not None else jax.local_device_count()
    transform = functools.partial(jax.pmap, axis_name=axis_name, donate_argnums=(0,) if donate else (), devices=devices)

    def check_leading(batch):
        for path, x in jax.tree_util.tree_flatten_with_path(batch)[0]:
            if jnp.ndim(x) < 2 or jnp.shape(x)[0] != n_dev:
                name = jax.tree_util.keystr(path) or "batch"
                raise ValueError(
                    f"batch entry {name} has shape {jnp.shape(x)}; the pmap step needs [{n_dev} devices, "
                    f"per-device batch, ...] (x.reshape({n_dev}, B // {n_dev}, ...))."
                )

    return StepFunction(step, transform, "pmap_adversarial_step", 1, check_leading, example_axes=2)
