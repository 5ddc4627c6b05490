r"""(c) The paper's model: (b) + the PatchGAN with 100 * BCE, simultaneous updates, Adam(b1 = 0.5) for both
players; the CPU-scale network on MNIST padded to 32x32 in [-1, 1] (the stand-in for CelebA-HQ).

    python -m experiments.mog_vaegan.main --config experiments/mog_vaegan/configs/vaegan.py \\
        --workdir runs/mog_vaegan/c_vaegan

Run time and numbers: experiments/mog_vaegan/README.md.
"""

from experiments.mog_vaegan.configs import ExperimentConfig, cpu_data, cpu_eval, cpu_model, cpu_train


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="c_vaegan",
        model=cpu_model(kl="population", var_reg_weight=0.1, adversarial=True),
        train=cpu_train(),
        data=cpu_data(),
        eval=cpu_eval(),
        seeds=(0, 1, 2),
    )
