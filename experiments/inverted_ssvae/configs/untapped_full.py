"""Gemp et al.'s untapped MNIST task at the paper's scale, the paper's reading of the method: for a GPU.

    JAX_DEFAULT_MATMUL_PRECISION=highest python -m experiments.inverted_ssvae.main \\
        --config experiments/inverted_ssvae/configs/untapped_full.py --workdir runs/inverted_ssvae/untapped_full

The paper's protocol (App. D): batch 10,000 per stream, 150 epochs of the labeled stream (525 steps),
10 seeds in one program, nets [50,50] / [10,10] / [250,500] tanh, z in [-1.5,1.5]^2, tau = 1, Adam lr
0.01, eps 1e-4, elementwise clipping 1 (plus the code's global-norm clip 5), (a_fd, a_rd) = (10, 0.1).

Expected: about 6 min on one H100 (both models, classifier and evaluation); CE on digits 5-9 about
M2 1.39 +- 0.28, untapped 1.37 +- 0.30, untapped - M2 -0.02 +- 0.13, not separated (README.md).
"""

from experiments.inverted_ssvae.configs import DataConfig, ExperimentConfig, RunConfig
from jaxvae.models.inverted_ssvae import Config
from jaxvae.train.optim import OptimizerConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=Config(),
        optim=OptimizerConfig(name="adam", learning_rate=1e-2, eps=1e-4, clip_value=1.0, clip_global_norm=5.0),
        data=DataConfig(task="untapped", batch_labeled=10_000, batch_unlabeled=10_000, batch_unfeatured=10_000),
        run=RunConfig(
            num_steps=525,
            seeds=tuple(range(10)),
            variants=("none", "z_observed"),
            log_every=25,
            checkpoint_every=525,
            sync_every=25,
        ),
    )
