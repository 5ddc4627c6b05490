"""EDM on the first 1000 MNIST training images (32x32 greys), sized for ~20 min on a shared 2-core CPU.

    python -m experiments.synthetic_generalization.diffusion_main \\
        --config experiments/synthetic_generalization/configs/diffusion.py --workdir runs/xiao-dm

U-Net 16 channels, levels (1, 2, 2), one residual block per level, no attention (263k parameters);
Adam 1e-3 with a 100-step warm-up and cosine decay, batch 32, 1200 steps (~38 epochs of the subset).
Pool: 5 x 1000 images of the 18-step Heun sampler (~0.2 s per image here). See the README for the
measured numbers.
"""

from experiments.synthetic_generalization.configs import DiffusionExperimentConfig, PoolConfig, Subset
from jaxvae.models import edm
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


def get_config() -> DiffusionExperimentConfig:
    return DiffusionExperimentConfig(
        model=edm.Config(channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=()),
        optim=OptimizerConfig(
            name="adam",
            learning_rate=1e-3,
            schedule="warmup_cosine",
            warmup_steps=100,
            decay_steps=1200,
            end_lr_factor=0.05,
            clip_global_norm=1.0,
        ),
        train=TrainConfig(
            num_steps=1200,
            batch_size=32,
            eval_every=600,
            log_every=50,
            checkpoint_every=200,
            seed=0,
            eval_batch_size=250,
            progress=False,
        ),
        data=Subset(train_examples=1000, test_examples=1000),
        pool=PoolConfig(num_blocks=5, chunk_size=250, seed=0, fid_examples=1000),
    )
