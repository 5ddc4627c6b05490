"""Config schemas of the Xiao et al. jobs: the diffusion model + synthetic pool, and the VAE gap study.

``DiffusionExperimentConfig``: trains :mod:`jaxvae.models.edm` on the VAE's training subset, samples
the synthetic pool (:func:`jaxvae.data.synthetic.write_pool`) and measures its MNIST-FID.
``GapsExperimentConfig``: trains the paper's FC VAE (:mod:`jaxvae.models.vae`, 32^2 -> 512 -> 512 -> 16,
Bernoulli) under Normal / DMaaPx / Aug.Naive / Aug.Tuned training, several seeds in one compiled program,
and measures the three gaps.
``WidthSweepConfig``: one width point ``(m_z, n_c)`` of the residual conv VAE (:mod:`jaxvae.models.xiao`)
under Normal or DMaaPx training, seeds in sequence, and its G_g / test ELBO (experiment (b)).
Config modules here define ``get_config()``; ``--set section.field=value`` overrides a leaf.
"""

from __future__ import annotations

import dataclasses

from jaxvae.config import check_one_of, check_positive_int
from jaxvae.models import edm, vae, xiao
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig

METHODS = ("normal", "dmaapx", "aug_naive", "aug_tuned")


@dataclasses.dataclass(frozen=True)
class Subset:
    """Which real MNIST images the study uses (the first ``train_examples`` / ``test_examples``).

    Attributes:
      train_examples: ``N = |D_train|``: the diffusion model and every VAE train on these images.
      test_examples: test images of the gaps and the FID reference.
      static_seed: seed of the training set's static binarization (BinaryMNIST here).
      test_seed: seed of the test set's static binarization.
    """

    train_examples: int = 1000
    test_examples: int = 1000
    static_seed: int = 1
    test_seed: int = 0

    def __post_init__(self):
        for name in ("train_examples", "test_examples"):
            check_positive_int(name, getattr(self, name))
        for name in ("static_seed", "test_seed"):
            check_positive_int(name, getattr(self, name), allow_zero=True)


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """The synthetic pool: ``num_blocks x train_examples`` images of the 18-step Heun sampler.

    Attributes:
      num_blocks: ``k`` blocks of ``N`` images (the paper's ``T``; Fig. 4's ``k x |D_train|``).
      chunk_size: images per chunk file (per sampler call); the resumable unit.
      seed: sampler seed (image ``i`` starts from ``fold_in(key(seed), i)``).
      fid_examples: pool images compared with as many test images for the MNIST-FID.
    """

    num_blocks: int = 5
    chunk_size: int = 250
    seed: int = 0
    fid_examples: int = 1000

    def __post_init__(self):
        for name in ("num_blocks", "chunk_size", "fid_examples"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("seed", self.seed, allow_zero=True)


@dataclasses.dataclass(frozen=True)
class DiffusionExperimentConfig:
    model: edm.Config = edm.Config()
    optim: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    data: Subset = Subset()
    pool: PoolConfig = PoolConfig()


@dataclasses.dataclass(frozen=True)
class GapEval:
    """Settings of the gaps (:mod:`jaxvae.metrics.gaps`).

    Attributes:
      elbo_samples: draws per example of the ELBO estimator (train and test alike).
      amortization_examples: test examples of the amortization gap.
      amortization_steps, amortization_lr, amortization_samples: the per-datapoint optimisation.
      record_every: steps between ELBO records of its convergence trajectory.
      robust_examples, robust_seeds, attack_steps, attack_eta, attack_delta: Table 2 (n_r, n_a, n_eps, eta, delta).
      curve_every: effective epochs between the G_g / test-ELBO points of the training curves.
      curve_samples: ELBO draws per example at those points (the final gaps use ``elbo_samples``).
    """

    elbo_samples: int = 10
    amortization_examples: int = 200
    amortization_steps: int = 500
    amortization_lr: float = 3e-2
    amortization_samples: int = 8
    record_every: int = 50
    robust_examples: int = 50
    robust_seeds: int = 10
    attack_steps: int = 50
    attack_eta: float = 1.0
    attack_delta: float = 0.1
    curve_every: int = 10
    curve_samples: int = 1

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.type == "int":
                check_positive_int(f.name, getattr(self, f.name))


@dataclasses.dataclass(frozen=True)
class GapsExperimentConfig:
    """One training method of Table 7 (``method``), ``seeds`` members in one compiled program.

    Attributes:
      method: ``"normal"``, ``"dmaapx"``, ``"aug_naive"`` or ``"aug_tuned"``.
      seeds: member seeds (initialisation, data order, noise).
      epochs: effective epochs (multiples of ``data.train_examples`` training examples).
      pool_dir: the synthetic pool (``dmaapx`` only), as written by the diffusion job.
      aug_probability: ``b`` of the augmentation baselines.
      pool_binarize_seed: seed of the pool's static binarization (the same rule as D_train's).
      pool_blocks: ``k``, pool blocks of ``N`` images cycled through (Fig. 4's ``k x |D_train|``); 0: all.
    """

    model: vae.Config = vae.Config(latent_dim=16, hidden=(512, 512), activation="relu", x_shape=(32, 32, 1))
    optim: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    data: Subset = Subset()
    eval: GapEval = GapEval()
    method: str = "normal"
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 100
    pool_dir: str = ""
    aug_probability: float = 0.1
    pool_blocks: int = 0
    pool_binarize_seed: int = 2

    def __post_init__(self):
        check_one_of("method", self.method, METHODS)
        check_positive_int("epochs", self.epochs)
        check_positive_int("pool_blocks", self.pool_blocks, allow_zero=True)
        if not self.seeds:
            raise ValueError("`seeds` must name at least one seed.")
        if self.method == "dmaapx" and not self.pool_dir:
            raise ValueError("`pool_dir` must name the synthetic pool for method='dmaapx'.")


@dataclasses.dataclass(frozen=True)
class WidthSweepConfig:
    """One width point of the residual conv VAE, trained by ``method``; seeds one after the other.

    Attributes:
      model: the residual conv VAE; the sweep varies ``model.m_z`` and ``model.n_c``.
      method: ``"normal"`` (repeats of D_train) or ``"dmaapx"`` (the pool's blocks).
      seeds: seeds trained in sequence (initialisation, data order, noise), each in its own sub-dir.
      epochs: effective epochs (multiples of ``data.train_examples`` training examples).
      elbo_samples: draws per example of the G_g / test-ELBO estimator (train and test alike).
      pool_dir, pool_blocks, pool_binarize_seed: as in :class:`GapsExperimentConfig`.
    """

    model: xiao.Config = xiao.Config(m_z=1, n_c=8)
    optim: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    data: Subset = Subset()
    method: str = "normal"
    seeds: tuple[int, ...] = (0,)
    epochs: int = 30
    elbo_samples: int = 10
    pool_dir: str = ""
    pool_blocks: int = 0
    pool_binarize_seed: int = 2

    def __post_init__(self):
        check_one_of("method", self.method, ("normal", "dmaapx"))
        check_positive_int("epochs", self.epochs)
        check_positive_int("elbo_samples", self.elbo_samples)
        check_positive_int("pool_blocks", self.pool_blocks, allow_zero=True)
        if not self.seeds:
            raise ValueError("`seeds` must name at least one seed.")
        if self.method == "dmaapx" and not self.pool_dir:
            raise ValueError("`pool_dir` must name the synthetic pool for method='dmaapx'.")
