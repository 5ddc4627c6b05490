"""NumPy-side data: offline MNIST, dSprites rendered here, binarization, resumable batch iterators, TFDS.

Nothing here imports model code; batches are ``dict[str, np.ndarray]`` handed to the engine.
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
    "DSPRITES_RENDERED_NAME",
    "BatchIterator",
    "DspritesArrays",
    "MnistArrays",
    "MnistNotInstalledError",
    "StackedIterator",
    "binarize_round",
    "binarize_static",
    "compose",
    "default_cache_dir",
    "dsprites_arrays",
    "dsprites_batches",
    "dsprites_transform",
    "dynamic_binarize",
    "epoch_batches",
    "load_dsprites_npz",
    "load_mnist",
    "load_tfds_arrays",
    "render_dsprites",
    "to_unit_float",
]
