r"""Baseline VAE, the longer run behind the IW-NLL number of experiments/vae/README.md.

    python -m experiments.vae.main --config experiments/vae/configs/long.py --workdir runs/vae-long

Same model as ``default.py`` (Burda et al.'s one-stochastic-layer VAE: 784-500-500-(2x50), tanh,
Bernoulli), dynamically binarized MNIST, Adam with a cosine decay from 1e-3 to 1e-4, batch 128,
56,250 steps (120 epochs), seed 0. The final evaluation is the importance-weighted NLL with
K = 5000 on all 10,000 test images (a fixed-seed binarization of the test set).

Run time and numbers: measured, in experiments/vae/README.md (2-core CPU machine, shared).
"""

import dataclasses

from experiments._common import IWEval
from experiments.vae.configs import default

NUM_STEPS = 56_250  # 120 epochs of 60,000 images at batch 128


def get_config():
    cfg = default.get_config()
    return dataclasses.replace(
        cfg,
        optim=dataclasses.replace(cfg.optim, schedule="cosine", decay_steps=NUM_STEPS, end_lr_factor=0.1),
        train=dataclasses.replace(
            cfg.train, num_steps=NUM_STEPS, eval_every=9_375, log_every=1_000, checkpoint_every=4_000, progress=False
        ),
        iw=IWEval(samples=5000, examples=None, sample_chunk=500, batch_size=10),
    )
