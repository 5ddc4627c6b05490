"""The untapped task with every setting of the authors' Table-1 script that this model has: for a GPU.

    JAX_DEFAULT_MATMUL_PRECISION=highest python -m experiments.inverted_ssvae.main \\
        --config experiments/inverted_ssvae/configs/untapped_full_codefull.py \\
        --workdir runs/inverted_ssvae/untapped_full_codefull [--set run.num_steps=600]

As close to ``examples/DEMO_mnist5.py`` with ``untapped/M12.py`` (commit 1645523 of ``imgemp/untapped``) as
this model gets: the code's objective and N(0, 0.001^2) init (``untapped_full_codeinit.py``), plus
q(z|x,y)'s scale head read as a softplus standard deviation (``scale_param='softplus'``, ``min_scale=1e-5``),
the q box [-6, 6] with the unfeatured z's in [-1.5, 1.5] (``code.reverse_z_low/high``), grey-level pixels as
Bernoulli targets (``data.pixels='grey'``) and 10 fixed (corner, z) unfeatured pairs tiled to the batch
(``data.unfeatured_z='fixed'``). Still different: 525 steps here against the 600 its loop takes in 150
epochs (``--set run.num_steps=600``, as every number of README.md), all seeds sharing one data seed
(``untapped_full_confirm.py`` gives each its own), the evaluation classifier, and small clipping constants.

Expected: minutes on one H100/H200, about 2.2 h per 4 seeds on a 2-core CPU. At 600 steps, seeds 0-9:
M2 2.03 +- 0.25, untapped 1.91 +- 0.23, paired -0.12 +- 0.09, sign-flip p = 0.11 (README.md).
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
        reverse_z_low=-1.5,
        reverse_z_high=1.5,
    )
    return ExperimentConfig(
        model=Config(z_low=-6.0, z_high=6.0, scale_param="softplus", alpha_fd=1.0, alpha_rd=0.01, code=code),
        optim=OptimizerConfig(name="adam", learning_rate=1e-2, eps=1e-4, clip_value=1.0, clip_global_norm=5.0),
        data=DataConfig(
            task="untapped",
            batch_labeled=10_000,
            batch_unlabeled=10_000,
            batch_unfeatured=10_000,
            pixels="grey",
            unfeatured_z="fixed",
        ),
        run=RunConfig(
            num_steps=525,
            seeds=tuple(range(10)),
            variants=("none", "z_observed"),
            log_every=25,
            checkpoint_every=525,
            sync_every=25,
        ),
    )
