"""The experiment's data: MNIST padded to 32x32 in [-1, 1] (the CPU stand-in for CelebA-HQ), random
images (smoke tests), or an image folder (the paper's CelebA-HQ 256)."""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments.mog_vaegan.configs import ExperimentConfig
from jaxvae.data.loader import BatchIterator


def load_data(cfg: ExperimentConfig) -> tuple[Any, dict]:
    """``(train batches factory, test arrays)``: ``make_iter(seed)`` gives the training iterator."""
    d, shape = cfg.data, cfg.model.x_shape
    if d.source == "mnist32":
        from jaxvae.data.mnist import load_mnist, pad_images

        if shape != (32, 32, 1):
            raise ValueError(f"data.source='mnist32' needs model.x_shape=(32, 32, 1); got {shape}.")
        mn = load_mnist()

        def prep(x, n):
            x = pad_images(np.asarray(x)[:n], (32, 32)).astype(np.float32) / 127.5 - 1.0
            return x.reshape((-1, 32, 32, 1))

        train, test = {"x": prep(mn.x_train, d.train_examples)}, {"x": prep(mn.x_test, d.test_examples)}
        return (lambda seed: BatchIterator(train, cfg.train.batch_size, seed=seed)), test
    if d.source == "random":
        n_train, n_test = d.train_examples or 256, d.test_examples or 64
        rng = np.random.default_rng(d.split_seed)
        train = {"x": rng.uniform(-1, 1, (n_train,) + shape).astype(np.float32)}
        test = {"x": rng.uniform(-1, 1, (n_test,) + shape).astype(np.float32)}
        return (lambda seed: BatchIterator(train, cfg.train.batch_size, seed=seed)), test
    from jaxvae.data.image_folder import ImageFolder

    folder = ImageFolder(d.folder, image_size=shape[:2], channels=shape[2], split_seed=d.split_seed)
    test = {"x": folder.load("validation")[: d.test_examples]}
    return (lambda seed: folder.iterator("train", cfg.train.batch_size, seed=seed)), test
