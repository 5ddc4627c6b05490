"""Config schema of the Gemp et al. experiment: a frozen dataclass tree, one section per concern.

``ExperimentConfig(model=inverted_ssvae.Config, optim=OptimizerConfig, data=DataConfig, run=RunConfig)``.
Config modules in this folder define ``get_config() -> ExperimentConfig``; the command line overrides
leaves with ``--set section.field=value`` (:mod:`experiments._cli`).
"""

from __future__ import annotations

import dataclasses

from jaxvae.config import check_one_of, check_positive, check_positive_int
from jaxvae.models.inverted_ssvae import Config as ModelConfig
from jaxvae.train.optim import OptimizerConfig

TASKS = ("untapped", "m2_100")
PIXELS = ("binary", "grey")
UNFEATURED_Z = ("fresh", "fixed")
VARIANTS = ("none", "z_observed", "z_sampled")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The three data streams (labeled pairs, unlabeled images, unfeatured labels) of one task.

    Attributes:
      task: ``'untapped'`` (Gemp et al.: digits 0-4 labeled, the CE on digits 5-9 scored) or ``'m2_100'``
        (Kingma et al.'s M2 with 100 labels, test error scored); ``experiments/inverted_ssvae/data.py``.
      num_unlabeled: untapped: size of the unlabeled set drawn with replacement from the 70k images.
      labeled_digits: untapped: digits ``0 .. labeled_digits-1`` carry labels.
      labeled_per_class: m2_100: labeled images per class.
      corner_high: the unfeatured "close corner" value (0.95).
      batch_labeled, batch_unlabeled, batch_unfeatured: per-stream batch sizes (0 drops the unfeatured
        stream).
      data_seed: seed of the data construction, of the batch order and of the fixed unfeatured z's.
      pixels: ``'binary'`` (images rounded to {0, 1}, the paper) or ``'grey'`` (``x/255`` in [0, 1] used
        as Bernoulli targets, the authors' ``DEMO_mnist5.py``), for every image of the task.
      unfeatured_z: ``'fresh'`` (the loss draws z anew each step) or ``'fixed'`` (each of the 10 corners
        paired with one z drawn once, tiled to the batch; the authors' code).
      per_seed: untapped only. False: every model seed shares the data of ``data_seed``. True: model seed
        ``s`` trains on the data of data seed ``data_seed + s`` (its own unlabeled subset, batch order and
        fixed z's, as the authors' script draws them afresh per trial); batches then carry a seed axis.
    """

    task: str = "untapped"
    num_unlabeled: int = 20_000
    labeled_digits: int = 5
    labeled_per_class: int = 10
    corner_high: float = 0.95
    batch_labeled: int = 1000
    batch_unlabeled: int = 1000
    batch_unfeatured: int = 1000
    data_seed: int = 0
    pixels: str = "binary"
    unfeatured_z: str = "fresh"
    per_seed: bool = False

    def __post_init__(self):
        check_one_of("data.task", self.task, TASKS)
        check_one_of("data.pixels", self.pixels, PIXELS)
        check_one_of("data.unfeatured_z", self.unfeatured_z, UNFEATURED_Z)
        for name in ("num_unlabeled", "labeled_digits", "labeled_per_class", "batch_labeled", "batch_unlabeled"):
            check_positive_int(f"data.{name}", getattr(self, name))
        check_positive_int("data.batch_unfeatured", self.batch_unfeatured, allow_zero=True)
        check_positive_int("data.data_seed", self.data_seed, allow_zero=True)
        if not isinstance(self.per_seed, bool):
            raise ValueError(f"`data.per_seed` must be True or False; got {self.per_seed!r}.")
        if self.per_seed and self.task != "untapped":
            raise ValueError(f"`data.per_seed=True` is for data.task='untapped' only; got task={self.task!r}.")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Training and evaluation of one invocation.

    Attributes:
      num_steps: optimizer steps per variant.
      seeds: model seeds trained together in one compiled program (:mod:`jaxvae.train.multi`); seed ``s``
        initialises from ``jax.random.key(s)`` and draws its noise from ``jax.random.key(10_000 + s)``.
      variants: reverse modes trained one after the other (``'none'``: the M2 baseline; ``'z_observed'``:
        untapped with eq. 17; ``'z_sampled'``: untapped with eq. 5).
      log_every, checkpoint_every, sync_every, time_limit_s: the engine loop's settings
        (:class:`jaxvae.train.loop.TrainConfig`); the time limit applies per variant.
      classifier_path: cache of the MNIST evaluation classifier (``.npz``), relative to the workdir.
      classifier_epochs, classifier_train_examples: its training.
      device_data: keep the training rows on the device and send row indices each step (the multi-step's
        ``tables``/``gather``): the same batches, for accelerator runs of many seeds at batch 10,000.
    """

    num_steps: int = 300
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    variants: tuple[str, ...] = ("none", "z_observed")
    log_every: int = 25
    checkpoint_every: int = 100
    sync_every: int = 1
    time_limit_s: float | None = None
    classifier_path: str = "mnist_classifier.npz"
    classifier_epochs: int = 3
    classifier_train_examples: int = 60_000
    device_data: bool = False

    def __post_init__(self):
        check_positive_int("run.num_steps", self.num_steps, allow_zero=True)
        for name in ("log_every", "checkpoint_every", "sync_every", "classifier_epochs", "classifier_train_examples"):
            check_positive_int(f"run.{name}", getattr(self, name))
        seeds = tuple(self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"`run.seeds` must be non-empty and distinct; got {self.seeds!r}.")
        for s in seeds:
            check_positive_int("run.seeds", s, allow_zero=True)
        if not self.variants or len(set(self.variants)) != len(self.variants):
            raise ValueError(f"`run.variants` must be non-empty and distinct; got {self.variants!r}.")
        for v in self.variants:
            check_one_of("run.variants", v, VARIANTS)
        if self.time_limit_s is not None:
            check_positive("run.time_limit_s", self.time_limit_s)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The whole experiment: the model, the optimizer (the paper's Adam by default), data and run."""

    model: ModelConfig = ModelConfig()
    optim: OptimizerConfig = OptimizerConfig(
        name="adam", learning_rate=1e-2, eps=1e-4, clip_value=1.0, clip_global_norm=5.0
    )
    data: DataConfig = DataConfig()
    run: RunConfig = RunConfig()
