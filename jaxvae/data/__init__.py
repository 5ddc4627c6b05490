"""NumPy-side data: offline MNIST, dSprites rendered here, image folders, the synthetic pool, binarization,
deterministic resumable batch iterators, TFDS.

The jax augmentations (``jaxvae.data.augment``, which run inside compiled steps) are imported from their
module so that this package stays NumPy-only. Nothing here imports model code; batches are
``dict[str, np.ndarray]`` handed to the engine.
"""

from jaxvae.data.dsprites import (
    DSPRITES_RENDERED_NAME,
    DspritesArrays,
    dsprites_arrays,
    dsprites_batches,
    dsprites_transform,
    load_dsprites_npz,
    render_dsprites,
)
from jaxvae.data.image_folder import (
    ImageFolder,
    horizontal_flip,
    list_images,
    read_image,
    read_images,
    scale_images,
    split_files,
)
from jaxvae.data.loader import BatchIterator, StackedIterator, epoch_batches
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
from jaxvae.data.synthetic import SyntheticPool, SyntheticPoolIterator, pool_size, write_pool
from jaxvae.data.tfds_adapter import load_tfds_arrays
from jaxvae.data.transforms import compose, dynamic_binarize

__all__ = [
    "BatchIterator",
    "DSPRITES_RENDERED_NAME",
    "DspritesArrays",
    "ImageFolder",
    "MnistArrays",
    "MnistNotInstalledError",
    "StackedIterator",
    "SyntheticPool",
    "SyntheticPoolIterator",
    "binarize_round",
    "binarize_static",
    "compose",
    "default_cache_dir",
    "dsprites_arrays",
    "dsprites_batches",
    "dsprites_transform",
    "dynamic_binarize",
    "epoch_batches",
    "horizontal_flip",
    "list_images",
    "load_dsprites_npz",
    "load_mnist",
    "load_tfds_arrays",
    "pad_images",
    "pool_size",
    "read_image",
    "read_images",
    "render_dsprites",
    "scale_images",
    "split_files",
    "to_unit_float",
    "write_pool",
]
