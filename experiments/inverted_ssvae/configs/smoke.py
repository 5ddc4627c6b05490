"""Seconds-long smoke run of the untapped pipeline (tiny nets, 3 steps, 2 seeds); the tests run it.

    python -m experiments.inverted_ssvae.main --config experiments/inverted_ssvae/configs/smoke.py \\
        --workdir /tmp/inverted_ssvae_smoke

About 1 min on a 2-core CPU (MNIST loading, the classifier on 2,000 images, compilation). Its numbers
mean nothing.
"""

from experiments.inverted_ssvae.configs import DataConfig, ExperimentConfig, RunConfig
from jaxvae.models.inverted_ssvae import Config
from jaxvae.train.optim import OptimizerConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=Config(hidden_y=(8,), hidden_z=(4,), hidden_x=(16,)),
        optim=OptimizerConfig(name="adam", learning_rate=1e-2, eps=1e-4, clip_value=1.0, clip_global_norm=5.0),
        data=DataConfig(task="untapped", num_unlabeled=200, batch_labeled=16, batch_unlabeled=16, batch_unfeatured=16),
        run=RunConfig(
            num_steps=3,
            seeds=(0, 1),
            variants=("none", "z_observed"),
            log_every=1,
            checkpoint_every=3,
            classifier_epochs=1,
            classifier_train_examples=2000,
        ),
    )
