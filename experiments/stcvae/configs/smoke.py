"""Smoke config: two β, two s, one seed, a few steps on a tiny sub-grid; used by the tests (plumbing only).

python -m experiments.stcvae.sweep --config experiments/stcvae/configs/smoke.py --workdir /tmp/stcvae-smoke
"""

from experiments.stcvae.configs import Evaluation, ExperimentConfig, Sweep
from experiments.stcvae.data import DspritesData
from jaxvae.models import stcvae
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=stcvae.Config(arch="mlp", latent_dim=4, hidden=16, layers=0, x_shape=(16, 16, 1)),
        optim=OptimizerConfig(name="adam", learning_rate=1e-3),
        train=TrainConfig(
            num_steps=6, batch_size=16, eval_every=0, log_every=3, checkpoint_every=3, progress=False, seed=0
        ),
        data=DspritesData(orientation_stride=20, position_stride=8, downsample=4),
        sweep=Sweep(betas=(1.0, 4.0), group_sizes=(1, 2), seeds=(0,)),
        eval=Evaluation(
            batch_size=32,
            mig_samples=50,
            factor_vae_train=20,
            factor_vae_eval=10,
            factor_vae_variance=50,
            traversal_steps=3,
        ),  # fmt: skip
    )
