"""NumPy-side data: offline MNIST, image folders, binarization, deterministic resumable batch iterators, TFDS.

Nothing here imports model code; batches are ``dict[str, np.ndarray]`` handed to the engine.
"""

from jaxvae.data.image_folder import (
    ImageFolder,
    horizontal_flip,
    list_images,
    read_image,
    read_images,
    scale_images,
    split_files,
)
from jaxvae.data.loader import BatchIterator, epoch_batches
from jaxvae.data.mnist import (
    MnistArrays,
    MnistNotInstalledError,
    binarize_round,
    binarize_static,
    default_cache_dir,
    load_mnist,
    pad_images,
    to_unit_float,
)
from jaxvae.data.tfds_adapter import load_tfds_arrays
from jaxvae.data.transforms import compose, dynamic_binarize

__all__ = [
    "BatchIterator",
    "ImageFolder",
    "MnistArrays",
    "MnistNotInstalledError",
    "binarize_round",
    "binarize_static",
    "compose",
    "default_cache_dir",
    "dynamic_binarize",
    "epoch_batches",
    "horizontal_flip",
    "list_images",
    "load_mnist",
    "load_tfds_arrays",
    "pad_images",
    "read_image",
    "read_images",
    "scale_images",
    "split_files",
    "to_unit_float",
]
