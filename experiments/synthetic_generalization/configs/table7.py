"""Table 7's BinaryMNIST row at CPU scale: the paper's FC VAE, 3 seeds, one method per run (``--set method=...``).

    python -m experiments.synthetic_generalization.main \\
        --config experiments/synthetic_generalization/configs/table7.py --workdir runs/xiao-normal --set method=normal

FC VAE 32^2 -> 512 -> 512 -> 16 (ReLU; decoder mirrored), Bernoulli likelihood, analytic KL; Adam 1e-3,
batch 100 (both unstated in the paper); D_train = the first 1000 BinaryMNIST training images,
test = the first 1000 test images; 100 effective epochs (the paper: 1000 on all 60k images).
"""

from experiments.synthetic_generalization.configs import GapEval, GapsExperimentConfig, Subset
from jaxvae.models import vae
from jaxvae.train.loop import TrainConfig
from jaxvae.train.optim import OptimizerConfig


def get_config() -> GapsExperimentConfig:
    return GapsExperimentConfig(
        model=vae.Config(
            arch="mlp", latent_dim=16, hidden=(512, 512), activation="relu", likelihood="bernoulli", x_shape=(32, 32, 1)
        ),
        optim=OptimizerConfig(name="adam", learning_rate=1e-3),
        train=TrainConfig(
            batch_size=100, eval_every=0, log_every=100, checkpoint_every=500, seed=0, progress=False, sync_every=10
        ),
        data=Subset(train_examples=1000, test_examples=1000),
        eval=GapEval(
            elbo_samples=10,
            amortization_examples=100,
            amortization_steps=300,
            amortization_lr=3e-2,
            amortization_samples=4,
            record_every=25,
            robust_examples=50,
            robust_seeds=10,
            attack_steps=50,
            attack_eta=1.0,
            attack_delta=0.1,
            curve_every=10,
            curve_samples=1,
        ),
        method="normal",
        seeds=(0, 1, 2),
        epochs=100,
    )
