r"""Smoke config: a tiny VAE for a few seconds of training; used by the tests.

    python -m experiments.vae.main --config experiments/vae/configs/smoke.py --workdir /tmp/vae-smoke

Expected: 30 steps on 2000 training images, evaluation on 200 test images at steps 15 and 30, a
checkpoint every 10 steps, IW-NLL with K=20 on 50 examples. Run time: about 25 s of CPU time
(imports and compilations dominate); 1-2 min wall on the shared 2-core machine under load
(measured 2026-11-26). Numbers are meaningless (the model barely trains; seed 0 gave test ELBO
-437.5 and IW-NLL 434.3 nats); only the plumbing is checked.
"""

from experiments._common import IWEval, MnistData
from experiments.vae.configs import ExperimentConfig
from jaxvae.models import vae
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=vae.Config(latent_dim=4, hidden=(32,), activation="tanh"),
        optim=OptimizerConfig(name="adam", learning_rate=1e-3),
        train=TrainConfig(
            num_steps=30,
            batch_size=32,
            eval_every=15,
            log_every=10,
            checkpoint_every=10,
            seed=0,
            eval_batch_size=100,
            progress=False,
        ),
        data=MnistData(binarization="dynamic", train_examples=2000, test_examples=200),
        iw=IWEval(samples=20, examples=50, sample_chunk=10, batch_size=25),
        num_images=16,
    )
