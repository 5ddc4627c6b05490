r"""(d) (c) with the moment-matched population KL (s^2 = var of the means + mean posterior variance);
the CPU-scale network on MNIST padded to 32x32 in [-1, 1] (the stand-in for CelebA-HQ).

    python -m experiments.mog_vaegan.main --config experiments/mog_vaegan/configs/vaegan_moment.py \\
        --workdir runs/mog_vaegan/d_vaegan_moment

Run time and numbers: experiments/mog_vaegan/README.md.
"""

from experiments.mog_vaegan.configs import ExperimentConfig, cpu_data, cpu_eval, cpu_model, cpu_train


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="d_vaegan_moment",
        model=cpu_model(kl="population_moment", var_reg_weight=0.1, adversarial=True),
        train=cpu_train(),
        data=cpu_data(),
        eval=cpu_eval(),
        seeds=(0, 1, 2),
    )
