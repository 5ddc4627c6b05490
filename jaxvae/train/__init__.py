"""The training engine, generic over any ``loss_fn`` (see :mod:`jaxvae.train.state`).

- :mod:`jaxvae.train.state`: ``TrainState``, ``LossOutput``, the ``loss_fn``/``eval_fn`` contract.
- :mod:`jaxvae.train.optim`: ``OptimizerConfig``, ``make_optimizer``.
- :mod:`jaxvae.train.steps`: ``create_train_state``, ``make_train_step``, ``make_eval_step``, pmap step.
- :mod:`jaxvae.train.sharding`, :mod:`jaxvae.train.distributed`: meshes, batch sharding, multi-host.
- :mod:`jaxvae.train.checkpoint`: ``CheckpointManager`` (atomic Orbax checkpoints, exact resume).
- :mod:`jaxvae.train.writers`: ``MetricWriter`` (JSONL, TensorBoard, PNG grids).
- :mod:`jaxvae.train.loop`: ``fit``, the one training loop, and ``TrainConfig``.

- :mod:`jaxvae.train.multi`: several seeds or configs in one compiled program.
- :mod:`jaxvae.train.adversarial`: the two-player (generator + discriminator) step, simultaneous or alternating.

The names below are also attributes of this package (``jaxvae.train.fit``), each imported from its
module on first use, so that importing the package pulls in neither Orbax nor tensorboardX.
"""

import importlib

_NAMES = {
    "fit": "loop",
    "TrainConfig": "loop",
    "evaluate": "loop",
    "TrainingDiverged": "loop",
    "create_train_state": "steps",
    "make_train_step": "steps",
    "make_eval_step": "steps",
    "make_pmap_train_step": "steps",
    "replicate_for_pmap": "steps",
    "unreplicate": "steps",
    "OptimizerConfig": "optim",
    "make_optimizer": "optim",
    "TrainState": "state",
    "LossOutput": "state",
    "stack_states": "multi",
    "make_multi_train_step": "multi",
    "make_multi_step": "multi",
    "member_state": "multi",
    "make_data_mesh": "sharding",
    "replicate": "sharding",
    "shard_batch": "sharding",
    "CheckpointManager": "checkpoint",
    "MetricWriter": "writers",
    "AdversarialLossOutput": "adversarial",
    "create_adversarial_state": "adversarial",
    "make_adversarial_step": "adversarial",
    "make_pmap_adversarial_step": "adversarial",
}
_MODULES = (
    "adversarial",
    "checkpoint",
    "distributed",
    "loop",
    "multi",
    "optim",
    "sharding",
    "state",
    "steps",
    "writers",
)
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(f"jaxvae.train.{_NAMES[name]}"), name)
    elif name in _MODULES:
        value = importlib.import_module(f"jaxvae.train.{name}")
    else:
        raise AttributeError(f"module 'jaxvae.train' has no attribute {name!r}; it has {sorted(_NAMES)}.")
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_NAMES) + list(_MODULES))
