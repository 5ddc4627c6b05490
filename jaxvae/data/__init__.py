"""NumPy-side data: offline MNIST, binarization, deterministic resumable batch iterators, a TFDS adapter.

Nothing here imports model code; batches are ``dict[str, np.ndarray]`` handed to the engine.
"""

from jaxvae.data.loader import BatchIterator, StackedIterator, epoch_batches
from jaxvae.data.mnist import (
    MnistArrays,
    MnistNotInstalledError,
    binarize_round,
    binarize_static,
    default_cache_dir,
    load_mnist,
    to_unit_float,
)
from jaxvae.data.tfds_adapter import load_tfds_arrays
from jaxvae.data.transforms import compose, dynamic_binarize

__all__ = [
    "BatchIterator",
    "MnistArrays",
    "MnistNotInstalledError",
    "StackedIterator",
    "binarize_round",
    "binarize_static",
    "compose",
    "default_cache_dir",
    "dynamic_binarize",
    "epoch_batches",
    "load_mnist",
    "load_tfds_arrays",
    "to_unit_float",
]
