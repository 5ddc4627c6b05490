"""Ablation: mean-field posterior q(z_l | x) (ignores z_{l+1}); otherwise ``default.py``.

Command::

    nice -n 10 .venv/bin/python -m experiments.rectified_hvae.main \\
        --config experiments/rectified_hvae/configs/mean_field.py --workdir runs/rectified_hvae/mean_field
"""

import dataclasses

from experiments.rectified_hvae.configs import default


def get_config():
    cfg = default.get_config()
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, posterior="mean_field"))
