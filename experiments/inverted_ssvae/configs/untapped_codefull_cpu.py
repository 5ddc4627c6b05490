"""``untapped_full_codefull.py`` (the authors' settings) at the CPU scale's batch of 500, for 600 steps.

    nice -n 10 python -m experiments.inverted_ssvae.main \\
        --config experiments/inverted_ssvae/configs/untapped_codefull_cpu.py \\
        --workdir runs/inverted_ssvae/cpu_codefull_600steps_10seeds [--set run.seeds='(10,...,19)']

Batch 500 per stream instead of 10,000, the 600 steps the authors' ``DEMO_mnist5.py`` loop takes in its
150 epochs, seeds 0-9 in one program. Expected: about 15 min on a 2-core CPU; over seeds 0-19 (two
invocations) untapped - M2 about -0.11 +- 0.05 paired (README.md).
"""

import dataclasses

from experiments.inverted_ssvae.configs import ExperimentConfig
from experiments.inverted_ssvae.configs.untapped_full_codefull import get_config as authors_settings


def get_config() -> ExperimentConfig:
    cfg = authors_settings()
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, batch_labeled=500, batch_unlabeled=500, batch_unfeatured=500),
        run=dataclasses.replace(cfg.run, num_steps=600, log_every=50, checkpoint_every=100),
    )
