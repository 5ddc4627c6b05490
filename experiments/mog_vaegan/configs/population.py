r"""(b) Population (means-only) KL + the variance regularizer 0.1 * sum(sigma^2 - log sigma^2 - 1), no
discriminator; the CPU-scale network on MNIST padded to 32x32 in [-1, 1] (the stand-in for CelebA-HQ).

    python -m experiments.mog_vaegan.main --config experiments/mog_vaegan/configs/population.py \\
        --workdir runs/mog_vaegan/b_population

Run time and numbers: experiments/mog_vaegan/README.md.
"""

from experiments.mog_vaegan.configs import ExperimentConfig, cpu_data, cpu_eval, cpu_model, cpu_train


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="b_population",
        model=cpu_model(kl="population", var_reg_weight=0.1, adversarial=False),
        train=cpu_train(),
        data=cpu_data(),
        eval=cpu_eval(),
        seeds=(0, 1, 2),
    )
