"""``untapped_full.py`` with the objective of the authors' code instead of the paper's eq. 8: for a GPU.

    JAX_DEFAULT_MATMUL_PRECISION=highest python -m experiments.inverted_ssvae.main \\
        --config experiments/inverted_ssvae/configs/untapped_full_codeweights.py \\
        --workdir runs/inverted_ssvae/untapped_full_codeweights

The authors' code (``imgemp/untapped``: ``S2S_DGM.py`` ``SSDGM._build_objectives``; ``M12.py``; the MNIST
demo) weights ``-J_fl``, ``-J_fu``, ``-J_ru`` by 0.1 and the discriminative terms by (1, 0.01) (the paper's
(10, 0.1) scaled by 0.1 overall), computes the classification loss at a Concrete sample
(``code.fd_loss='concrete_sample'``) and the reconstruction norm at a hard Bernoulli sample, without
gradient (``code.rd_input='hard_sample'``); see :class:`jaxvae.models.inverted_ssvae.AuthorsCode`.
Everything else as ``untapped_full.py``. Expected run time: as ``untapped_full.py``; not measured at this
scale (at the CPU scale of ``untapped.py``, seeds 0-2, it changed nothing against the paper's objective,
README.md at commit eedc819).
"""

from experiments.inverted_ssvae.configs import DataConfig, ExperimentConfig, RunConfig
from jaxvae.models.inverted_ssvae import AuthorsCode, Config
from jaxvae.train.optim import OptimizerConfig


def get_config() -> ExperimentConfig:
    code = AuthorsCode(weight_fl=0.1, weight_fu=0.1, weight_ru=0.1, fd_loss="concrete_sample", rd_input="hard_sample")
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
