r"""The paper's setting: CelebA-HQ 256x256x3 from an image folder (80/20 split, seed 1967, horizontal
flips, [-1, 1]), the ResNetV2 VAE (latent 512, six stages of width 128) and the 6-layer PatchGAN,
population KL + variance regularizer + 100 * BCE, simultaneous Adam(1e-4, b1 = 0.5), batch 20.

    python -m experiments.mog_vaegan.main --config experiments/mog_vaegan/configs/celeba_hq_256.py \\
        --workdir runs/mog_vaegan/celeba_hq_256 --set data.folder=/path/to/celeba_hq_256

Needs a GPU: the code's author reports ~13 min per epoch of 24,000 images on an RTX 3090 and
300-400 epochs for a full training (here: 300 epochs = 360,000 steps of 20). Not run on this
project's CPU machine; ``tests/experiments/test_mog_vaegan_configs.py`` smoke-tests it on random
images at a small size. No FID is computed (no Inception network offline); samples and
reconstructions are written as PNG grids at each evaluation.
"""

from experiments.mog_vaegan.configs import Data, Eval, ExperimentConfig
from jaxvae.models import mog_vaegan
from jaxvae.train.loop import TrainConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="celeba_hq_256",
        model=mog_vaegan.Config(),  # the defaults are the paper's code
        train=TrainConfig(
            num_steps=360_000,
            batch_size=20,
            eval_every=12_000,
            log_every=200,
            checkpoint_every=6_000,
            seed=0,
            eval_batch_size=50,
        ),
        data=Data(source="image_folder", folder="/path/to/celeba_hq_256", split_seed=1967),
        eval=Eval(fid_samples=0, posterior_examples=6_000),
        num_images=16,
    )
