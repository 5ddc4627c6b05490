"""Config schema of the rectified-Gaussian hierarchy job (and of the one-layer baseline trained alike).

``ExperimentConfig(model_kind, model=rectified_hvae.Config, vae=vae.Config, optim, train, data=MnistData,
iw=IWEval, layers=LayerEval, epochs)``; config modules here define ``get_config()``, the command line
overrides leaves with ``--set section.field=value`` (:mod:`experiments._cli`).
"""

from __future__ import annotations

import dataclasses

from experiments._common import IWEval, MnistData
from jaxvae.config import check_in_range, check_one_of, check_positive_int
from jaxvae.models import rectified_hvae as rh
from jaxvae.models import vae as vae_lib
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig

MODEL_KINDS = ("rectified_hvae", "vae")


@dataclasses.dataclass(frozen=True)
class LayerEval:
    """Per-layer diagnostics and figures after training.

    Attributes:
      examples: test examples for active units and sparsity.
      samples: samples of q per example for the posterior means E_q[z_l | x].
      threshold: Burda et al.'s activity threshold on Cov_x(E_q[z_u | x]).
      figure_columns: columns of the layer-variation figure.
    """

    examples: int = 2000
    samples: int = 20
    threshold: float = 0.01
    figure_columns: int = 10

    def __post_init__(self):
        for name in ("examples", "samples", "figure_columns"):
            check_positive_int(name, getattr(self, name))
        check_in_range("threshold", self.threshold, 0.0, float("inf"))


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The whole experiment.

    Attributes:
      model_kind: 'rectified_hvae' (``model``) or 'vae' (the one-layer baseline, ``vae``).
      model: the hierarchy's config.
      vae: the baseline's config (used when ``model_kind='vae'``).
      optim: optimizer and schedule; a decaying schedule's ``decay_steps`` is set to the run's number
        of steps by :func:`resolve`.
      train: loop settings; ``train.num_steps`` is replaced by ``epochs * steps_per_epoch`` when
        ``epochs > 0``.
      data: binarized MNIST.
      iw: the importance-weighted NLL after training.
      layers: per-layer diagnostics and figures.
      epochs: training epochs (0: use ``train.num_steps``).
    """

    model_kind: str = "rectified_hvae"
    model: rh.Config = rh.Config()
    vae: vae_lib.Config = vae_lib.Config()
    optim: OptimizerConfig = OptimizerConfig(name="adamax", learning_rate=2e-3)
    train: TrainConfig = TrainConfig(batch_size=100, eval_every=0, log_every=200, checkpoint_every=3000)
    data: MnistData = MnistData()
    iw: IWEval = IWEval(samples=5000, examples=1000, sample_chunk=500)
    layers: LayerEval = LayerEval()
    epochs: int = 0

    def __post_init__(self):
        check_one_of("model_kind", self.model_kind, MODEL_KINDS)
        check_positive_int("epochs", self.epochs, allow_zero=True)


def resolve(cfg: ExperimentConfig) -> ExperimentConfig:
    """``train.num_steps`` from ``epochs``, and a decaying schedule's ``decay_steps`` from it."""
    train = cfg.train
    if cfg.epochs > 0:
        n = cfg.data.train_examples or 60_000
        train = dataclasses.replace(train, num_steps=cfg.epochs * (n // train.batch_size))
    optim = cfg.optim
    if optim.schedule != "constant":
        optim = dataclasses.replace(optim, decay_steps=train.num_steps)
    return dataclasses.replace(cfg, train=train, optim=optim)
