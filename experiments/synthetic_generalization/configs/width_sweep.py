"""Experiment (b) at CPU scale: one width point of the residual conv VAE (``--set model.m_z=... model.n_c=...``).

    python -m experiments.synthetic_generalization.width_main \\
        --config experiments/synthetic_generalization/configs/width_sweep.py --workdir runs/xiao-width-normal-mz1-nc8 \\
        --set model.m_z=1 --set model.n_c=8 --set method=normal

Residual conv VAE of App. B.1 (latent 8x8x(64 m_z), Bernoulli likelihood for BinaryMNIST), the same
data as the Table 7 runs (the first 1000 BinaryMNIST training images padded to 32x32, the first 1000
test images); the encoder's last layer starts at zero (q = the prior, KL 0; with the default
initialisation the KL of the 4096 latents starts near 1e6 nats and 30 epochs do not bring it down).
Adam 3e-3 (at the Table 7 runs' 1e-3 the n_c = 8 model was at test ELBO -302 after 30 epochs, at 3e-3
at -143), batch 100, 50 effective epochs, seeds in sequence.
"""

from experiments.synthetic_generalization.configs import Subset, WidthSweepConfig
from jaxvae.models import xiao
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


def get_config() -> WidthSweepConfig:
    return WidthSweepConfig(
        model=xiao.Config(x_shape=(32, 32, 1), m_z=1, n_c=8, likelihood="bernoulli", zero_init_posterior=True),
        optim=OptimizerConfig(name="adam", learning_rate=3e-3),
        train=TrainConfig(
            batch_size=100, eval_every=0, log_every=50, checkpoint_every=100, seed=0, progress=False, sync_every=10
        ),
        data=Subset(train_examples=1000, test_examples=1000),
        method="normal",
        seeds=(0,),
        epochs=50,
        elbo_samples=10,
        pool_blocks=1,
    )
