"""NumPy-side data: offline MNIST, binarization, deterministic resumable batch iterators, a TFDS adapter.

The synthetic-data pool (``synthetic``) is exported here; the jax augmentations (``jaxvae.data.augment``,
which run inside compiled steps) are imported from their module so that this package stays NumPy-only.

Nothing here imports model code; batches are ``dict[str, np.ndarray]`` handed to the engine.
"""

from jaxvae.data.loader import BatchIterator, epoch_batches
from jaxvae.data.mnist import (
    MnistArrays,
    MnistNotInstalledError,
    binarize_round,
    binarize_static,
    default_cache_dir,
    load_mnist,
    to_unit_float,
)
from jaxvae.data.synthetic import SyntheticPool, SyntheticPoolIterator, pool_size, write_pool
from jaxvae.data.tfds_adapter import load_tfds_arrays
from jaxvae.data.transforms import compose, dynamic_binarize

__all__ = [
    "BatchIterator",
    "MnistArrays",
    "MnistNotInstalledError",
    "SyntheticPool",
    "SyntheticPoolIterator",
    "binarize_round",
    "binarize_static",
    "compose",
    "default_cache_dir",
    "dynamic_binarize",
    "epoch_batches",
    "load_mnist",
    "load_tfds_arrays",
    "pool_size",
    "to_unit_float",
    "write_pool",
]
