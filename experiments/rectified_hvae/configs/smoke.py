"""Smoke: a small hierarchy (4 layers 32-24-16-8) on 2000 training images for 8 epochs (320 steps),
IW-NLL k=50 on 100 test examples. About a minute on the shared 2-core CPU (mostly compilation).

Command::

    .venv/bin/python -m experiments.rectified_hvae.main \\
        --config experiments/rectified_hvae/configs/smoke.py --workdir /tmp/rhvae_smoke
"""

from experiments._common import IWEval, MnistData
from experiments.rectified_hvae.configs import ExperimentConfig, LayerEval
from jaxvae.models.rectified_hvae import Config
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        model_kind="rectified_hvae",
        model=Config(
            latent_sizes=(32, 24, 16, 8), up_hidden=(64, 48, 32, 16), down_hidden=(32, 24, 16), decoder_hidden=64
        ),
        optim=OptimizerConfig(name="adamax", learning_rate=2e-3),
        train=TrainConfig(
            batch_size=50, eval_every=0, log_every=20, checkpoint_every=160, seed=0, eval_batch_size=250, progress=False
        ),
        data=MnistData(train_examples=2000, test_examples=500),
        iw=IWEval(samples=50, examples=100, sample_chunk=25),
        layers=LayerEval(examples=200, samples=5, figure_columns=6),
        epochs=8,
    )
