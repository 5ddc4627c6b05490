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

from experiments.inverted_ssvae.configs import DataConfig, ExperimentConfig, RunConfig
from jaxvae.models.inverted_ssvae import AuthorsCode, Config
from jaxvae.train.optim import OptimizerConfig


def get_config() -> ExperimentConfig:
    code = AuthorsCode(
        weight_fl=0.1,
        weight_fu=0.1,
        weight_ru=0.1,
        fd_loss="concrete_sample",
        rd_input="hard_sample",
        init_std=0.001,
    )
    return ExperimentConfig(
        model=Config(alpha_fd=1.0, alpha_rd=0.01, code=code),
        optim=OptimizerConfig(name="adam", learning_rate=1e-2, eps=1e-4, clip_value=1.0, clip_global_norm=5.0),
        data=DataConfig(task="untapped", batch_labeled=10_000, batch_unlabeled=10_000, batch_unfeatured=10_000),
        run=RunConfig(
            num_steps=525,
            seeds=tuple(range(10)),
            variants=("none", "z_observed"),
            log_every=25,
            checkpoint_every=525,
            sync_every=25,
        ),
    )
