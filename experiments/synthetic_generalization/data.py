"""The real data of the Xiao et al. study: MNIST padded to 32x32, a training subset, BinaryMNIST.

BinaryMNIST here is one fixed-seed stochastic binarization ``b = 1[u < x]`` of the grey images
(:func:`jaxvae.data.mnist.binarize_static`; not the Larochelle file). The synthetic pool is binarized
by the same rule (:class:`jaxvae.data.synthetic.SyntheticPool`, ``binarize="static"``), so real and
synthetic images go through the same grey -> Bernoulli step; the diffusion model trains on greys.

What each Table 7 method feeds the VAE: :func:`member_iterators` (D_train repeats, or the pool's blocks for
DMaaPx, one iterator per seed) and :func:`make_loss_fn` (the augmentation baselines augment each batch
inside the compiled step).
"""

from __future__ import annotations

import jax
import numpy as np

from experiments.synthetic_generalization.configs import GapsExperimentConfig
from jaxvae.data.augment import AUG_NAIVE, AUG_TUNED, augment
from jaxvae.data.loader import BatchIterator
from jaxvae.data.mnist import binarize_static, load_mnist, pad_images, to_unit_float
from jaxvae.data.synthetic import SyntheticPool, SyntheticPoolIterator
from jaxvae.models import vae


def grey_images(subset, split: str) -> np.ndarray:
    """Grey images ``float32 [n, 32, 32, 1]`` in [0, 1]: the first ``subset.<split>_examples`` of ``split``."""
    m = load_mnist()
    x, n = (m.x_train, subset.train_examples) if split == "train" else (m.x_test, subset.test_examples)
    x = to_unit_float(np.asarray(x)[:n], flatten=False)
    return pad_images(x.reshape(-1, 28, 28))[..., None].astype(np.float32)


def binary_images(subset, split: str) -> np.ndarray:
    """BinaryMNIST ``float32 [n, 32, 32, 1]`` of 0/1: :func:`grey_images` binarized with the split's seed."""
    seed = subset.static_seed if split == "train" else subset.test_seed
    return binarize_static(grey_images(subset, split), seed=seed).astype(np.float32)


def member_iterators(cfg: GapsExperimentConfig, x_train: np.ndarray):
    """One training iterator per seed: the pool's blocks for ``dmaapx``, D_train for the other methods."""
    n, b = cfg.data.train_examples, cfg.train.batch_size
    if cfg.method == "dmaapx":
        pool = SyntheticPool(cfg.pool_dir)
        return [
            SyntheticPoolIterator(
                pool,
                b,
                block_size=n,
                seed=s,
                num_blocks=cfg.pool_blocks or None,
                binarize="static",
                binarize_seed=cfg.pool_binarize_seed,
            )
            for s in cfg.seeds
        ]
    return [BatchIterator({"x": x_train}, b, seed=s) for s in cfg.seeds]


class AddChannel:
    """Pool batches are ``[..., B, 32, 32]``; the VAEs take ``[..., B, 32, 32, 1]``.

    ``ndim``: the rank of a batch with its channel axis (5 for seeds stacked as ``[S, B, 32, 32, 1]``,
    4 for one seed's ``[B, 32, 32, 1]``); a batch one axis short gets the channel appended.
    """

    def __init__(self, inner, ndim: int = 5):
        self.inner = inner
        self.ndim = ndim

    def __iter__(self):
        return self

    def __next__(self):
        b = next(self.inner)
        return {"x": b["x"][..., None] if b["x"].ndim == self.ndim - 1 else b["x"]}

    def get_state(self):
        return self.inner.get_state()

    def set_state(self, s):
        self.inner.set_state(s)


def make_loss_fn(cfg: GapsExperimentConfig):
    """The VAE's negative ELBO; for the augmentation baselines the batch is augmented first (on the device)."""
    base = vae.make_loss_fn(cfg.model)
    if cfg.method not in ("aug_naive", "aug_tuned"):
        return base
    aug = (AUG_NAIVE if cfg.method == "aug_naive" else AUG_TUNED).with_probability(cfg.aug_probability)

    def loss_fn(params, model_state, batch, key, *, step=0):
        k_aug, k_elbo = jax.random.split(key)
        return base(params, model_state, {"x": augment(k_aug, batch["x"], aug)}, k_elbo, step=step)

    return loss_fn
