"""The training engine, generic over any ``loss_fn`` (see :mod:`jaxvae.train.state`).

- :mod:`jaxvae.train.state`: ``TrainState``, ``LossOutput``, the ``loss_fn``/``eval_fn`` contract.
- :mod:`jaxvae.train.optim`: ``OptimizerConfig``, ``make_optimizer``.
- :mod:`jaxvae.train.steps`: ``create_train_state``, ``make_train_step``, ``make_eval_step``, pmap step.
- :mod:`jaxvae.train.sharding`, :mod:`jaxvae.train.distributed`: meshes, batch sharding, multi-host.
- :mod:`jaxvae.train.checkpoint`: ``CheckpointManager`` (atomic Orbax checkpoints, exact resume).
- :mod:`jaxvae.train.writers`: ``MetricWriter`` (JSONL, TensorBoard, PNG grids).
- :mod:`jaxvae.train.loop`: ``fit``, the one training loop, and ``TrainConfig``.

Submodules are imported explicitly (``from jaxvae.train.loop import fit``) so that importing the
light ones does not pull in Orbax or tensorboardX.
"""
