r"""CPU-scale sweep: β ∈ {1, 2, 4, 6, 8, 10} x s ∈ {1, 2, 4, 8} x 3 seeds (72 models), small MLP, 32x32 sub-grid.

    python -m experiments.stcvae.sweep --config experiments/stcvae/configs/cpu.py --workdir runs/stcvae-cpu

Data: dSprites (rendered here), the sub-grid of every 4th orientation and every 4th x/y position (3 x 6 x 10 x
8 x 8 = 11,520 images), 2x2-downsampled to 32x32 binary; 10,368 train / 1,152 test. Model: latent 10,
MLP 1024-128-128 encoder and mirror decoder (the CPU stand-in for the code's conv-MLP), β-STCVAE variant 2,
MWS. Adam 1e-3, batch 64, 1,500 steps per model (96,000 examples, about 9 epochs). Run time measured on
the shared 2-core machine: see experiments/stcvae/README.md.
"""

from experiments.stcvae.configs import Evaluation, ExperimentConfig, Sweep
from experiments.stcvae.data import DspritesData
from jaxvae.models import stcvae
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=stcvae.Config(arch="mlp", latent_dim=10, hidden=128, layers=1, x_shape=(32, 32, 1)),
        optim=OptimizerConfig(name="adam", learning_rate=1e-3),
        train=TrainConfig(
            num_steps=1500,
            batch_size=64,
            eval_every=0,
            log_every=250,
            checkpoint_every=500,
            progress=False,
            sync_every=25,
            seed=0,
        ),  # fmt: skip
        data=DspritesData(orientation_stride=4, position_stride=4, downsample=2),
        sweep=Sweep(),
        eval=Evaluation(
            batch_size=256, mig_samples=1000, factor_vae_train=500, factor_vae_eval=300, factor_vae_variance=2000
        ),
    )
