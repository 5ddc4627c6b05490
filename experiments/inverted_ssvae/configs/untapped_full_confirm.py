"""The confirmatory run of Gemp et al.'s headline comparison: 40 new seeds, each on its own data.

Fixed in ``README.md`` ("The confirmatory test") before any of these seeds was trained: seeds 10-49
(none used before), each with its own unlabeled subset, batch order and 10 fixed unfeatured pairs
(``data.per_seed``: model seed ``s`` on data seed ``s``, as the authors' script draws them afresh per
trial), everything else as ``untapped_full_codefull.py`` with the authors' 600 steps at batch 10,000.

On a GPU, groups of seeds as vmapped programs with the training rows on the device
(``run.device_data=True``), one group after another within a time box: ``../gpu_confirm.sh``.

On the 2-core CPU in groups (a seed's result does not depend on its group), e.g.
``--set run.seeds='(10,11,12,13)' --workdir runs/inverted_ssvae/confirm_seeds10-13``, each group scored by
the same classifier file (``--set run.classifier_path=...``), pooled with ``pool.py``.
"""

import dataclasses

from experiments.inverted_ssvae.configs.untapped_full_codefull import get_config as _code_full
from experiments.inverted_ssvae.main import ExperimentConfig

CONFIRM_SEEDS = tuple(range(10, 50))


def get_config() -> ExperimentConfig:
    cfg = _code_full()
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, per_seed=True),
        run=dataclasses.replace(
            cfg.run, num_steps=600, seeds=CONFIRM_SEEDS, log_every=25, checkpoint_every=25, sync_every=25
        ),
    )
