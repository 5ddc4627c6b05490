"""``untapped_full_codeweights.py`` plus the later authors' code's init, every kernel from N(0, 0.001^2).

    JAX_DEFAULT_MATMUL_PRECISION=highest python -m experiments.inverted_ssvae.main \\
        --config experiments/inverted_ssvae/configs/untapped_full_codeinit.py \\
        --workdir runs/inverted_ssvae/untapped_full_codeinit

``untapped/M12.py`` in the version that goes with ``examples/DEMO_mnist5.py`` (the paper's Table-1 script)
initialises every dense kernel with ``lasagne.init.Normal(.001)`` (``code.init_std=0.001``). With this init
M2 starts at the paper's chance level on digits 5-9. Expected run time: as ``untapped_full.py``; not measured
at this scale (at 600 steps and batch 500, seeds 0-9: untapped - M2 -0.03 +- 0.04, README.md at commit
38ca98b).
"""

import dataclasses

from experiments.inverted_ssvae.configs import ExperimentConfig
from experiments.inverted_ssvae.configs.untapped_full_codeweights import get_config as code_weights


def get_config() -> ExperimentConfig:
    cfg = code_weights()
    code = dataclasses.replace(cfg.model.code, init_std=0.001)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, code=code))
