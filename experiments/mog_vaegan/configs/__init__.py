"""Config schema of the Rivera VAE-GAN job: ``ExperimentConfig(model=mog_vaegan.Config, train, data, eval)``.

Config modules here define ``get_config() -> ExperimentConfig``; the command line overrides leaves
with ``--set section.field=value`` (:mod:`experiments._cli`). The four CPU-scale models of the
comparison (``baseline.py`` (a), ``population.py`` (b), ``vaegan.py`` (c), ``vaegan_moment.py`` (d))
share :func:`cpu_model` and :func:`cpu_train`; ``celeba_hq_256.py`` is the paper's setting.
"""

from __future__ import annotations

import dataclasses

from jaxvae.config import check_one_of, check_positive_int
from jaxvae.models import mog_vaegan
from jaxvae.train.loop import TrainConfig

DATASETS = ("mnist32", "image_folder", "random")


@dataclasses.dataclass(frozen=True)
class Data:
    """Where the images come from; every source gives ``[N, H, W, C]`` float32 in [-1, 1].

    Attributes:
      source: ``"mnist32"``: MNIST padded to 32x32 (2 pixels of 0 each side), scaled ``x / 127.5 - 1``,
        the CPU-scale stand-in for CelebA-HQ; ``"image_folder"``: a folder of images
        (:mod:`jaxvae.data.image_folder`, e.g. CelebA-HQ 256 as users keep it, 80/20 split with seed
        1967 and random horizontal flips as the code); ``"random"``: uniform noise (smoke tests only).
      folder: the image folder (``"image_folder"`` only).
      split_seed: seed of the train/validation split (the code: 1967).
      train_examples, test_examples: use only the first N images (None: all).
    """

    source: str = "mnist32"
    folder: str = ""
    split_seed: int = 1967
    train_examples: int | None = None
    test_examples: int | None = None

    def __post_init__(self):
        check_one_of("source", self.source, DATASETS)
        for name in ("train_examples", "test_examples"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        if self.source == "image_folder" and not self.folder:
            raise ValueError("`data.folder` must name the image folder for source='image_folder'.")


@dataclasses.dataclass(frozen=True)
class Eval:
    """The evaluation after training (on the test split).

    Attributes:
      fid_samples: prior samples scored by MNIST-FID against the test images (MNIST stand-in only; 0 skips).
      posterior_examples: test images encoded for active units, posterior variances and the aggregate KL.
      aggregate_kl_samples: Monte Carlo draws of the aggregate-posterior KL estimator.
    """

    fid_samples: int = 10_000
    posterior_examples: int = 10_000
    aggregate_kl_samples: int = 4096

    def __post_init__(self):
        check_positive_int("fid_samples", self.fid_samples, allow_zero=True)
        check_positive_int("posterior_examples", self.posterior_examples)
        check_positive_int("aggregate_kl_samples", self.aggregate_kl_samples)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The whole job.

    Attributes:
      name: the model's label in the comparison (``"a_baseline"``, ...).
      model: the VAE(-GAN).
      train: loop settings (``train.seed`` seeds the initialisation, the noise and the data order).
      data: the images.
      eval: the evaluation after training.
      mode: ``"simultaneous"`` (the code) or ``"alternating"`` (D then G) adversarial updates.
      seeds: the seeds trained one after the other (each in ``<workdir>/seed_<s>``, one compiled step).
      num_images: samples and reconstruction pairs in the PNG grids.
    """

    name: str = "vaegan"
    model: mog_vaegan.Config = mog_vaegan.Config()
    train: TrainConfig = TrainConfig()
    data: Data = Data()
    eval: Eval = Eval()
    mode: str = "simultaneous"
    seeds: tuple[int, ...] = (0,)
    num_images: int = 64

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"`seeds` must be distinct ints >= 0, at least one; got {self.seeds!r}.")
        check_one_of("mode", self.mode, ("simultaneous", "alternating"))
        check_positive_int("num_images", self.num_images)


def cpu_model(**kw) -> mog_vaegan.Config:
    """The CPU-scale network for MNIST padded to 32x32: three stride-2 ResNetV2 stages of width 16
    (32 -> 4) without identity blocks, latent 16, a 4x4x4 bottleneck; a 3-layer PatchGAN (16, 16, 1) with
    strides (2, 2, 1) giving an 8x8 logit map. Loss weights (5000, 0.1, 100) and Adam's b1 = 0.5 as the
    code; learning rate 5e-4 instead of 1e-4 (the CPU budget allows about one epoch, README)."""
    base = dict(
        x_shape=(32, 32, 1),
        latent_dim=16,
        enc_widths=(16, 16, 16, 16),
        dec_widths=(16, 16, 16, 16),
        enc_blocks=0,
        dec_blocks=0,
        bottleneck_channels=4,
        disc_features=(16, 16, 1),
        disc_strides=(2, 2, 1),
        learning_rate=5e-4,
    )
    return mog_vaegan.Config(**{**base, **kw})


def cpu_eval() -> Eval:
    """The CPU-scale evaluation: 10,000 prior samples against the 10,000 test images."""
    return Eval(fid_samples=10_000, posterior_examples=10_000, aggregate_kl_samples=1024)


def cpu_data() -> Data:
    """MNIST padded to 32x32 in [-1, 1], all 60,000 training and 10,000 test images."""
    return Data(source="mnist32")


def cpu_train(**kw) -> TrainConfig:
    """The CPU-scale loop shared by the four models: batch 32, 1,875 steps (one epoch of the 60,000
    training images; sized to the shared 2-core machine's budget, README), evaluated once at the end; a
    one-hour safety limit per seed."""
    base = dict(
        num_steps=1875,
        batch_size=32,
        eval_every=1875,
        log_every=125,
        checkpoint_every=375,
        seed=0,
        eval_batch_size=500,
        progress=False,
        time_limit_s=3600.0,
    )
    return TrainConfig(**{**base, **kw})
