"""Gemp et al.'s untapped MNIST task, M2 baseline vs untapped (eq. 17), scaled to a shared 2-core CPU.

Command::

    nice -n 10 python -m experiments.inverted_ssvae.main \
        --config experiments/inverted_ssvae/configs/untapped.py --workdir runs/inverted_ssvae/untapped

Differences from the paper's protocol (App. D; papers.md §1.5-1.6), all for CPU time: batch 500 per
stream instead of 10,000; 200 steps instead of 150 epochs (about 525 steps at batch 10,000), i.e. about
2% of the paper's examples seen; 5 seeds instead of 10 (trained together with ``jax.vmap``). Everything
else follows the paper: nets [50,50] / [10,10] / [250,500] tanh, z in [-1.5,1.5]^2, tau = 1, Adam lr 0.01,
eps 1e-4, elementwise clipping 1 (plus the code's global-norm clip 5), (a_fd, a_rd) = (10, 0.1).

Measured (2026-11-26, 2-core CPU shared with ~7 jobs, load 12-18): 41 min wall for both variants;
cross-entropy on digits 5-9 over 5 seeds, M2 1.676 +- 0.404, untapped 1.674 +- 0.164 (no significant
difference at this scale). Paper (10 seeds, full protocol): M2 2.30, untapped 2.07.
"""

from experiments.inverted_ssvae.main import DataConfig, ExperimentConfig, RunConfig
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
