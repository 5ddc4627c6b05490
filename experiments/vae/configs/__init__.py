"""Config schema of the baseline VAE job: a frozen dataclass tree, one section per concern.

``ExperimentConfig(model=vae.Config, optim=OptimizerConfig, train=TrainConfig, data=DataConfig,
eval=EvalConfig)``. Config modules in this folder define ``get_config() -> ExperimentConfig``; the
command line overrides leaves with ``--set section.field=value`` (:mod:`experiments._cli`).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxvae.models import vae
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """MNIST and its binarization.

    Attributes:
      binarization: ``'dynamic'``: each training batch is re-binarized, ``b ~ Bernoulli(x)``, every
        time it is drawn; ``'static'``: one fixed-seed stochastic binarization of the training set.
        Either way the test set is one fixed-seed stochastic binarization (``static_seed``), so test
        numbers are comparable across runs. Not the Larochelle binarized-MNIST file.
      static_seed: seed of the static binarizations (train under ``'static'``, and test).
      train_examples: use only the first N training images (None: all 60000).
      test_examples: use only the first N test images (None: all 10000).
    """

    binarization: Literal["dynamic", "static"] = "dynamic"
    static_seed: int = 0
    train_examples: int | None = None
    test_examples: int | None = None

    def __post_init__(self):
        if self.binarization not in ("dynamic", "static"):
            raise ValueError(f"`binarization` must be 'dynamic' or 'static'; got {self.binarization!r}.")
        for name in ("train_examples", "test_examples"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"`{name}` must be None or >= 1; got {v!r}.")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Final evaluation and images.

    Attributes:
      iw_samples: K of the importance-weighted log-likelihood ``log p(x) ~= logsumexp_k log w_k - log K``
        (Burda et al. 2016, Eq. 8) run after training; 0 skips it. The literature's "test NLL" uses 5000.
      iw_examples: number of test examples it runs on (None: the whole test set).
      iw_sample_chunk: importance samples drawn per chunk (memory ~ batch x chunk).
      iw_batch_size: examples per IW batch.
      num_images: samples (and test reconstructions) drawn into the PNG grids at each evaluation.
    """

    iw_samples: int = 1000
    iw_examples: int | None = 1000
    iw_sample_chunk: int = 250
    iw_batch_size: int = 16
    num_images: int = 64

    def __post_init__(self):
        if int(self.iw_samples) < 0:
            raise ValueError(f"`iw_samples` must be >= 0; got {self.iw_samples!r}.")
        if self.iw_examples is not None and int(self.iw_examples) < 1:
            raise ValueError(f"`iw_examples` must be None or >= 1; got {self.iw_examples!r}.")
        if int(self.num_images) < 1:
            raise ValueError(f"`num_images` must be >= 1; got {self.num_images!r}.")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The whole job: model, optimizer, loop, data, evaluation."""

    model: vae.Config = vae.Config()
    optim: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    data: DataConfig = DataConfig()
    eval: EvalConfig = EvalConfig()
