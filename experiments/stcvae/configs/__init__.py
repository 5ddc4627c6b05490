"""Config schema of the β-STCVAE granularity experiments: one frozen dataclass tree.

``ExperimentConfig(model=stcvae.Config, optim, train, data=DspritesData, sweep=Sweep, eval=Evaluation)``.
``main.py`` trains the one model ``model`` (its ``beta``, ``group_size``) with ``train.seed``;
``sweep.py`` trains every (β, s, seed) of ``sweep``, one compiled program per group size (s is a shape;
β and the seed vary along the program's member axis). Override leaves with ``--set section.field=value``.
"""

from __future__ import annotations

import dataclasses

from experiments.stcvae.data import DspritesData
from jaxvae.config import as_widths, check_nonnegative, check_positive_int, set_field
from jaxvae.models import stcvae
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The (β, s, seed) grid; every combination is one model.

    Attributes:
      betas: β values (>= 0).
      group_sizes: granularities s (each in [1, latent_dim]).
      seeds: model seeds (initialisation and noise; the data order is the one of ``train.seed``).
    """

    betas: tuple[float, ...] = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)
    group_sizes: tuple[int, ...] = (1, 2, 4, 8)
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self):
        set_field(self, "betas", tuple(float(b) for b in self.betas))
        for b in self.betas:
            check_nonnegative("betas", b)
        set_field(self, "group_sizes", as_widths("group_sizes", self.group_sizes))
        set_field(self, "seeds", tuple(check_positive_int("seeds", s, allow_zero=True) for s in self.seeds))
        if not self.betas or not self.seeds:
            raise ValueError("`betas` and `seeds` must not be empty.")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Per-model evaluation after training.

    Attributes:
      batch_size: evaluation batch (the ``M`` of the TC estimates) for the ELBO and its parts.
      mig_samples: images at which MIG's expectation is evaluated (the aggregate posterior uses all).
      factor_vae_train, factor_vae_eval, factor_vae_variance: votes and images of the FactorVAE score.
      traversal_steps: offsets per latent in the saved traversals (0: none saved).
    """

    batch_size: int = 256
    mig_samples: int = 10_000
    factor_vae_train: int = 10_000
    factor_vae_eval: int = 5_000
    factor_vae_variance: int = 10_000
    traversal_steps: int = 7

    def __post_init__(self):
        for name in ("batch_size", "mig_samples", "factor_vae_train", "factor_vae_eval", "factor_vae_variance"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("traversal_steps", self.traversal_steps, allow_zero=True)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The whole job."""

    model: stcvae.Config = stcvae.Config()
    optim: OptimizerConfig = OptimizerConfig(name="adam", learning_rate=1e-4)
    train: TrainConfig = TrainConfig(batch_size=128)
    data: DspritesData = DspritesData()
    sweep: Sweep = Sweep()
    eval: Evaluation = Evaluation()

    def __post_init__(self):
        if tuple(self.model.x_shape) != self.data.image_shape:
            raise ValueError(
                f"`model.x_shape` {self.model.x_shape} must be the data's image shape {self.data.image_shape} "
                f"(downsample {self.data.downsample})."
            )
