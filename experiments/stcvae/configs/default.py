r"""The official code's settings (papers.md §3.4) on the whole dSprites grid (rendered here), 64x64: for a GPU.

    python -m experiments.stcvae.main --config experiments/stcvae/configs/default.py --workdir runs/stcvae
    python -m experiments.stcvae.sweep --config experiments/stcvae/configs/default.py --workdir runs/stcvae-sweep

Model: the code's conv-MLP (``arch="code"``, hidden 1000, 2 extra dense layers), latent 16, β = 10, s = 2,
variant 2, MWS; Adam 1e-4, batch 128. The code's loop length (``num_iterations = 100``) is not pinned down
(papers.md §3.4), so the 30,000 steps here (about 5 epochs) are this project's choice. Not run here (no GPU
was lent to the session that wrote it): no expected numbers yet.
"""

from experiments.stcvae.configs import ExperimentConfig
from experiments.stcvae.data import DspritesData
from jaxvae.models import stcvae
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=stcvae.Config(),
        optim=OptimizerConfig(name="adam", learning_rate=1e-4),
        train=TrainConfig(num_steps=30_000, batch_size=128, eval_every=0, log_every=500, checkpoint_every=5_000),
        data=DspritesData(test_fraction=0.05),
    )
