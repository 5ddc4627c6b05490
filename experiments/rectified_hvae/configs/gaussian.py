"""Ablation: Gaussian units (no rectification) in the same structured hierarchy; otherwise ``default.py``.

Command::

    nice -n 10 .venv/bin/python -m experiments.rectified_hvae.main \\
        --config experiments/rectified_hvae/configs/gaussian.py --workdir runs/rectified_hvae/gaussian
"""

import dataclasses

from experiments.rectified_hvae.configs import default


def get_config():
    cfg = default.get_config()
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, units="gaussian"))
