"""The one-layer baseline VAE (``jaxvae.models.vae``: 784-500-500-50 tanh, Gaussian) trained with the
same data, optimizer, schedule, epochs and evaluation as ``default.py``.

Command::

    nice -n 10 .venv/bin/python -m experiments.rectified_hvae.main \\
        --config experiments/rectified_hvae/configs/baseline_vae.py --workdir runs/rectified_hvae/baseline_vae
"""

import dataclasses

from experiments.rectified_hvae.configs import default
from jaxvae.models.vae import Config as VAEConfig


def get_config():
    cfg = default.get_config()
    return dataclasses.replace(
        cfg, model_kind="vae", vae=VAEConfig(latent_dim=50, hidden=(500, 500), activation="tanh")
    )
