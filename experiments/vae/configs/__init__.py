"""Config schema of the baseline VAE job: a frozen dataclass tree, one section per concern.

``ExperimentConfig(model=vae.Config, optim=OptimizerConfig, train=TrainConfig, data=MnistData,
iw=IWEval, num_images)``. Config modules in this folder define ``get_config() -> ExperimentConfig``;
the command line overrides leaves with ``--set section.field=value`` (:mod:`experiments._cli`).
"""

from __future__ import annotations

import dataclasses

from experiments._common import IWEval, MnistData
from jaxvae.config import check_positive_int
from jaxvae.models import vae
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The whole job: model, optimizer, loop, data, the final IW-NLL, and the image grids.

    Attributes:
      num_images: samples (and test reconstructions) drawn into the PNG grids at each evaluation.
    """

    model: vae.Config = vae.Config()
    optim: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    data: MnistData = MnistData()
    iw: IWEval = IWEval()
    num_images: int = 64

    def __post_init__(self):
        check_positive_int("num_images", self.num_images)
