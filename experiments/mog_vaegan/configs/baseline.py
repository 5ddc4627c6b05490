r"""(a) The baseline ("How NOT to train your VAE"): 5000 * MAE + the per-sample KL, no variance regularizer,
no discriminator; the CPU-scale network on MNIST padded to 32x32 in [-1, 1] (the stand-in for CelebA-HQ).

    python -m experiments.mog_vaegan.main --config experiments/mog_vaegan/configs/baseline.py \\
        --workdir runs/mog_vaegan/a_baseline

Run time and numbers: experiments/mog_vaegan/README.md (measured there, with the command and date).
"""

from experiments.mog_vaegan.configs import ExperimentConfig, cpu_data, cpu_eval, cpu_model, cpu_train


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="a_baseline",
        model=cpu_model(kl="per_sample", var_reg_weight=0.0, adversarial=False),
        train=cpu_train(),
        data=cpu_data(),
        eval=cpu_eval(),
        seeds=(0, 1, 2),
    )
