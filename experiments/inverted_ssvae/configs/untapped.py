"""Gemp et al.'s untapped MNIST task, M2 baseline vs untapped (eq. 17), the paper's reading, at CPU scale.

    nice -n 10 python -m experiments.inverted_ssvae.main \\
        --config experiments/inverted_ssvae/configs/untapped.py --workdir runs/inverted_ssvae/untapped

The paper's protocol (App. D) scaled down for a 2-core CPU: batch 500 per stream instead of 10,000,
200 steps instead of 150 epochs (about 2 % of the paper's examples), 5 seeds instead of 10. Everything
else is the paper's: nets [50,50] / [10,10] / [250,500] tanh, z in [-1.5,1.5]^2, tau = 1, Adam lr 0.01,
eps 1e-4, elementwise clipping 1 (plus the authors' code's global-norm clip 5), (a_fd, a_rd) = (10, 0.1).

Expected: 14 min on the shared 2-core CPU for both models (2026-12-04; 41 min under heavier load before);
CE on digits 5-9 over seeds 0-4: M2 1.56 +- 0.08, untapped 1.62 +- 0.22, untapped - M2 +0.06 +- 0.12
paired, not separated (``results/untapped_cpu_200steps.json``).
Paper (10 seeds, full protocol): M2 2.30, untapped 2.07.
"""

from experiments.inverted_ssvae.configs import DataConfig, ExperimentConfig, RunConfig
from jaxvae.models.inverted_ssvae import Config
from jaxvae.train.optim import OptimizerConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=Config(),
        optim=OptimizerConfig(name="adam", learning_rate=1e-2, eps=1e-4, clip_value=1.0, clip_global_norm=5.0),
        data=DataConfig(task="untapped", batch_labeled=500, batch_unlabeled=500, batch_unfeatured=500),
        run=RunConfig(
            num_steps=200, seeds=(0, 1, 2, 3, 4), variants=("none", "z_observed"), log_every=20, checkpoint_every=100
        ),
    )
