"""Train and evaluate one β-STCVAE (``model.beta``, ``model.group_size``, ``train.seed``) on dSprites (rendered here).

    python -m experiments.stcvae.main --config experiments/stcvae/configs/default.py --workdir runs/stcvae \\
        [--set model.group_size=4 --set model.beta=6 ...]

The one-cell case of :mod:`experiments.stcvae.sweep` (same data, training and evaluation); leaves the same
files in the work dir (``sweep.json`` holds the one cell).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from experiments._common import run_main
from experiments.stcvae import sweep
from experiments.stcvae.configs import ExperimentConfig, Sweep


def run(cfg: ExperimentConfig, workdir: str) -> dict[str, Any]:
    """The sweep of the single cell (``model.beta``, ``model.group_size``, ``train.seed``)."""
    one = Sweep(betas=(cfg.model.beta,), group_sizes=(cfg.model.group_size,), seeds=(cfg.train.seed,))
    return sweep.run(dataclasses.replace(cfg, sweep=one), workdir)


def main(argv=None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    return run_main(run, argv, experiment="stcvae", expected=ExperimentConfig, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
