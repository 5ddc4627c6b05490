r"""Baseline VAE on dynamically binarized MNIST (Kingma & Welling 2014; the Burda et al. 2016 VAE).

    python -m experiments.vae.main --config experiments/vae/configs/default.py --workdir runs/vae-default

Model: MLP encoder 784-500-500-(2x50), decoder 50-500-500-784, tanh, Bernoulli likelihood, analytic
KL; Adam 1e-3, batch 128, 10000 steps (~21 epochs), dynamic binarization of the training set, a
fixed-seed binarization of the test set. Prints the test ELBO over all 10000 test images and the
importance-weighted NLL (K=1000) on the first 1000 test images; leaves metrics, images, TensorBoard
events, a checkpoint and results.json in the work dir.

Expected (seed 0, measured 2026-11-26 on the shared 2-core CPU machine, jax 0.10.2): test ELBO
-98.95 nats (all 10000 test images; -103.3 at step 4000), test NLL 91.53 +- 0.78 nats (IW, K=1000,
first 1000 test images). Run time: 394 s of CPU time; wall time 29 min under a load average of ~17
(on a quiet 2-core machine, a few minutes: ~1.3M training examples at ~20k examples/s plus the IW
evaluation). See experiments/vae/README.md.
"""

from experiments._common import IWEval, MnistData
from experiments.vae.configs import ExperimentConfig
from jaxvae.models import vae
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=vae.Config(
            arch="mlp", latent_dim=50, hidden=(500, 500), activation="tanh", likelihood="bernoulli", kl="analytic"
        ),
        optim=OptimizerConfig(name="adam", learning_rate=1e-3),
        train=TrainConfig(
            num_steps=10_000,
            batch_size=128,
            eval_every=2_000,
            log_every=500,
            checkpoint_every=2_000,
            seed=0,
            eval_batch_size=1_000,
        ),
        data=MnistData(binarization="dynamic", static_seed=1, test_seed=0),
        iw=IWEval(samples=1000, examples=1000, sample_chunk=250, batch_size=16),
        num_images=64,
    )
