"""Optimizer factory: a frozen config in, an ``optax.GradientTransformation`` out.

The chain built by :func:`make_optimizer` is, in order::

    clip_by_value (if clip_value)
      -> clip_by_global_norm (if clip_global_norm)
      -> optimizer (adam | adamax | adamw | sgd) with the learning-rate schedule

Element-wise clipping first bounds single outliers, global-norm clipping then bounds the whole
update direction, and the optimizer sees the clipped gradient. Non-finite updates are *not* handled
here: the train step (:mod:`jaxvae.train.steps`) skips them and counts them in
``TrainState.skipped``.
"""

from __future__ import annotations

import dataclasses
import math

import optax

_NAMES = ("adam", "adamax", "adamw", "sgd")
_SCHEDULES = ("constant", "cosine", "exponential", "warmup_cosine")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer, learning-rate schedule and clipping.

    Attributes:
      name: ``'adam'``, ``'adamax'``, ``'adamw'`` (decoupled weight decay) or ``'sgd'`` (plain, no
        momentum; ``b1``, ``b2``, ``eps`` unused).
      learning_rate: peak learning rate ``eta`` (> 0).
      b1, b2: exponential decay rates of the first and second moment estimates, in [0, 1).
      eps: denominator offset of Adam-type updates (> 0, so finite gradients give finite updates).
      weight_decay: decoupled weight decay ``lambda`` of AdamW (>= 0); must be 0 for the other
        names.
      schedule: learning rate ``eta_t`` at optimizer step ``t`` (counted from 0):

        - ``'constant'``: ``eta_t = eta``.
        - ``'cosine'``: ``eta_t = eta * (a + (1 - a) * (1 + cos(pi * min(t, T) / T)) / 2)`` with
          ``T = decay_steps`` and ``a = end_lr_factor``.
        - ``'exponential'``: ``eta_t = eta * r ** (t / T)`` with ``r = decay_rate``, ``T =
          decay_steps``, floored (for ``r < 1``) at ``eta * end_lr_factor``.
        - ``'warmup_cosine'``: linear from 0 to ``eta`` over ``warmup_steps``, then cosine from
          ``eta`` to ``eta * end_lr_factor`` at step ``decay_steps`` (``decay_steps`` counts the
          warm-up).
      warmup_steps: warm-up length for ``'warmup_cosine'`` (>= 0, < ``decay_steps``).
      decay_steps: ``T`` above (> 0 for the decaying schedules).
      decay_rate: ``r`` of the exponential schedule (> 0).
      end_lr_factor: final learning rate as a fraction of ``learning_rate``, in [0, 1].
      clip_global_norm: if set (> 0), gradients ``g`` become ``g * min(1, c / ||g||_2)`` with the
        norm taken over the whole parameter pytree.
      clip_value: if set (> 0), each gradient element is clipped to ``[-c, c]``.
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_steps: int = 0
    decay_rate: float = 0.1
    end_lr_factor: float = 0.0
    clip_global_norm: float | None = None
    clip_value: float | None = None

    def __post_init__(self):
        _validate(self)


def _finite_number(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"`{name}` must be a finite number; got {v!r}.")
    return float(v)


def _validate(cfg: OptimizerConfig) -> None:
    if cfg.name not in _NAMES:
        raise ValueError(f"`name` must be one of {_NAMES}; got {cfg.name!r}.")
    if cfg.schedule not in _SCHEDULES:
        raise ValueError(f"`schedule` must be one of {_SCHEDULES}; got {cfg.schedule!r}.")
    if _finite_number("learning_rate", cfg.learning_rate) <= 0:
        raise ValueError(f"`learning_rate` must be > 0; got {cfg.learning_rate!r}.")
    for n in ("b1", "b2"):
        v = _finite_number(n, getattr(cfg, n))
        if not 0.0 <= v < 1.0:
            raise ValueError(f"`{n}` must lie in [0, 1); got {v!r}.")
    if _finite_number("eps", cfg.eps) <= 0:
        # eps > 0 keeps the update finite whenever the gradient is (no 0/0 at g = 0), which the
        # train step's skip-on-non-finite relies on.
        raise ValueError(f"`eps` must be > 0; got {cfg.eps!r}.")
    if _finite_number("weight_decay", cfg.weight_decay) < 0:
        raise ValueError(f"`weight_decay` must be >= 0; got {cfg.weight_decay!r}.")
    if cfg.weight_decay != 0 and cfg.name != "adamw":
        raise ValueError(
            "`weight_decay` is only used by name='adamw'; got "
            f"weight_decay={cfg.weight_decay!r} with name={cfg.name!r}. Use name='adamw' or set "
            "weight_decay=0."
        )
    for n in ("warmup_steps", "decay_steps"):
        v = getattr(cfg, n)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"`{n}` must be an int >= 0; got {v!r}.")
    if cfg.schedule != "constant" and cfg.decay_steps <= 0:
        raise ValueError(f"`decay_steps` must be > 0 for schedule={cfg.schedule!r}; got {cfg.decay_steps!r}.")
    if cfg.schedule == "warmup_cosine" and cfg.warmup_steps >= cfg.decay_steps:
        raise ValueError(
            "`warmup_steps` must be < `decay_steps` (decay_steps counts the warm-up); got "
            f"warmup_steps={cfg.warmup_steps}, decay_steps={cfg.decay_steps}."
        )
    if _finite_number("decay_rate", cfg.decay_rate) <= 0:
        raise ValueError(f"`decay_rate` must be > 0; got {cfg.decay_rate!r}.")
    if not 0.0 <= _finite_number("end_lr_factor", cfg.end_lr_factor) <= 1.0:
        raise ValueError(f"`end_lr_factor` must lie in [0, 1]; got {cfg.end_lr_factor!r}.")
    for n in ("clip_global_norm", "clip_value"):
        v = getattr(cfg, n)
        if v is not None and _finite_number(n, v) <= 0:
            raise ValueError(f"`{n}` must be None or > 0; got {v!r}.")


def make_schedule(cfg: OptimizerConfig) -> optax.Schedule:
    """The learning-rate schedule ``t -> eta_t`` described in :class:`OptimizerConfig`."""
    lr = float(cfg.learning_rate)
    end = lr * float(cfg.end_lr_factor)
    if cfg.schedule == "constant":
        return optax.constant_schedule(lr)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, cfg.decay_steps, alpha=float(cfg.end_lr_factor))
    if cfg.schedule == "exponential":
        end_value = end if (cfg.decay_rate < 1 and end > 0) else None
        return optax.exponential_decay(lr, cfg.decay_steps, float(cfg.decay_rate), end_value=end_value)
    # warmup_cosine
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=lr,
        warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.decay_steps,
        end_value=end,
    )


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """Build the clipped, scheduled optimizer described by ``cfg``.

    Args:
      cfg: an :class:`OptimizerConfig` (validated when constructed).

    Returns:
      An ``optax.GradientTransformation``; its state is a pytree of arrays (checkpointable).

    Raises:
      ValueError: if ``cfg`` is not an ``OptimizerConfig``.
    """
    if not isinstance(cfg, OptimizerConfig):
        raise ValueError(f"`cfg` must be an OptimizerConfig; got {type(cfg).__name__}.")
    lr = make_schedule(cfg)
    if cfg.name == "adam":
        opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif cfg.name == "adamax":
        opt = optax.adamax(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif cfg.name == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    else:
        opt = optax.sgd(lr)
    parts = []
    if cfg.clip_value is not None:
        parts.append(optax.clip(float(cfg.clip_value)))
    if cfg.clip_global_norm is not None:
        parts.append(optax.clip_by_global_norm(float(cfg.clip_global_norm)))
    if not parts:
        return opt
    return optax.chain(*parts, opt)
