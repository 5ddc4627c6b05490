"""dSprites (rendered here) for the granularity sweep: a factorial sub-grid held in memory as one table.

The sub-grid keeps every ``orientation_stride``-th orientation and every ``position_stride``-th position
of the public grid (all shapes and scales), so it is still a full factorial grid: MIG's entropies and the
FactorVAE votes work on it exactly as on the whole grid. Images are rendered by
:func:`jaxvae.data.dsprites.render_dsprites` (64x64) and, with ``downsample = k > 1``, reduced to
``64/k`` pixels a side by a ``k x k`` block mean thresholded at 0.5 (binary again, so the Bernoulli
likelihood stays a likelihood). A fixed random ``test_fraction`` of the sub-grid is held out for the
test ELBO. The table is ``uint8``; the compiled train step gathers rows by index and converts them.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from jaxvae.config import check_in_range, check_positive_int
from jaxvae.data import dsprites


@dataclasses.dataclass(frozen=True)
class DspritesData:
    """Which part of dSprites (rendered here) a run uses.

    Attributes:
      orientation_stride: keep orientation classes ``0, k, 2k, ...`` of the 40 (1: all).
      position_stride: keep posX and posY classes ``0, k, 2k, ...`` of the 32 (1: all).
      downsample: block size of the image reduction (1: 64x64; 2: 32x32).
      test_fraction: fraction of the sub-grid held out for the test ELBO, in [0, 0.5].
      split_seed: seed of the train/test split.
    """

    orientation_stride: int = 1
    position_stride: int = 1
    downsample: int = 1
    test_fraction: float = 0.1
    split_seed: int = 0

    def __post_init__(self):
        for name in ("orientation_stride", "position_stride", "downsample"):
            check_positive_int(name, getattr(self, name))
        if 40 % self.orientation_stride or 32 % self.position_stride or 64 % self.downsample:
            raise ValueError(
                "`orientation_stride` must divide 40, `position_stride` 32 and `downsample` 64; got "
                f"{self.orientation_stride}, {self.position_stride}, {self.downsample}."
            )
        check_in_range("test_fraction", self.test_fraction, 0.0, 0.5)
        check_positive_int("split_seed", self.split_seed, allow_zero=True)

    @property
    def strides(self) -> tuple[int, ...]:
        """Class stride per factor (color, shape, scale, orientation, posX, posY)."""
        return (1, 1, 1, self.orientation_stride, self.position_stride, self.position_stride)

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        """Factor sizes of the sub-grid."""
        return tuple(n // k for n, k in zip(dsprites.FACTOR_SIZES, self.strides, strict=True))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        side = dsprites.IMAGE_SIZE // self.downsample
        return (side, side, 1)


class SweepData(NamedTuple):
    """The sub-grid: ``images`` uint8 ``[N, H, W, 1]``, ``classes`` int64 ``[N, 6]`` (sub-grid classes, in
    grid order), ``train`` / ``test`` row indices, ``factor_sizes`` of the sub-grid."""

    images: np.ndarray
    classes: np.ndarray
    train: np.ndarray
    test: np.ndarray
    factor_sizes: tuple[int, ...]


def sub_grid_classes(cfg: DspritesData) -> np.ndarray:
    """``[N, 6]`` sub-grid classes in mixed-radix order (posY fastest), ``N = prod(cfg.factor_sizes)``."""
    grids = np.meshgrid(*[np.arange(n) for n in cfg.factor_sizes], indexing="ij")
    return np.stack([g.reshape(-1) for g in grids], axis=1).astype(np.int64)


def render(cfg: DspritesData, classes: np.ndarray) -> np.ndarray:
    """uint8 ``[n, H, W, 1]`` images of sub-grid ``classes`` ``[n, 6]`` (rendered, then downsampled)."""
    full = np.asarray(classes, np.int64) * np.asarray(cfg.strides)
    img = dsprites.render_dsprites(dsprites.classes_to_index(full), dtype=np.float32)
    k = cfg.downsample
    if k > 1:
        n, h, w = img.shape
        img = (img.reshape(n, h // k, k, w // k, k).mean(axis=(2, 4)) >= 0.5).astype(np.float32)
    return img.astype(np.uint8)[..., None]


def load(cfg: DspritesData, *, chunk: int = 4096) -> SweepData:
    """Render the whole sub-grid and split it (deterministic in ``cfg``)."""
    classes = sub_grid_classes(cfg)
    images = np.concatenate([render(cfg, classes[a : a + chunk]) for a in range(0, len(classes), chunk)])
    perm = np.random.default_rng(cfg.split_seed).permutation(len(classes))
    n_test = int(round(cfg.test_fraction * len(classes)))
    return SweepData(images, classes, np.sort(perm[n_test:]), np.sort(perm[:n_test]), cfg.factor_sizes)


def rows_of(cfg: DspritesData, classes: np.ndarray) -> np.ndarray:
    """Row index in the sub-grid table of each of ``classes`` ``[n, 6]`` (mixed radix over the sub-grid sizes)."""
    sizes = cfg.factor_sizes
    idx = np.zeros(len(classes), np.int64)
    for k, n in enumerate(sizes):
        idx = idx * n + np.asarray(classes)[:, k]
    return idx
