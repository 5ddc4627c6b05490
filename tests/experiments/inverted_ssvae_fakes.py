"""Small stand-ins shared by the Gemp experiment's tests: a fake MNIST and a small data section."""

from __future__ import annotations

import hashlib

import numpy as np

from experiments.inverted_ssvae.configs import DataConfig


class FakeMnist:
    """400 random uint8 "images" (300 train, 100 test) with random labels."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.x_train = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
        self.y_train = rng.integers(0, 10, 300).astype(np.uint8)
        self.x_test = rng.integers(0, 256, (100, 28, 28), dtype=np.uint8)
        self.y_test = rng.integers(0, 10, 100).astype(np.uint8)


def tree_hash(tree):
    s = hashlib.sha256()
    for k in sorted(tree):
        v = tree[k]
        if isinstance(v, dict):
            s.update(tree_hash(v).encode())
        else:
            s.update(k.encode())
            s.update(np.ascontiguousarray(v).tobytes())
    return s.hexdigest()[:16]


def small_cfg(task="untapped", **kw):
    base = dict(
        task=task, num_unlabeled=50, batch_labeled=8, batch_unlabeled=8, batch_unfeatured=15, labeled_per_class=2
    )
    return DataConfig(**{**base, **kw})
