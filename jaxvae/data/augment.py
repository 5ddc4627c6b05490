r"""ADA-style augmentations for binary digits, in jax, for use inside a compiled train step.

Xiao et al.'s augmentation baselines (eq. 9) train on ``E_{x ~ D_train} E_{p_aug(x' | x)} ELBO(x')``
with the pipeline of Karras et al. (2020, "ADA"), every operation applied with probability ``b``
(0.1 or 0.12 in the paper). The paper's op tables (App. E) are not reproduced in our notes, so the
two presets below are our reading of ADA for **binary** MNIST, stated here in full:

=========== ============================================ ================= ==================
op           what it does (ADA's parameter law)            ``AUG_NAIVE``     ``AUG_TUNED``
=========== ============================================ ================= ==================
xflip        mirror left-right                             yes               --
rotate90     rotate by k x 90 deg, k uniform in {0..3}     yes               --
xint         integer shift, each axis U[-m, m] x size      m = 0.125         m = 0.125
scale        isotropic, factor 2^N(0, s^2)                 s = 0.2           s = 0.1
rotate       angle U[-r, r] x 180 deg                      r = 1             r = 1/12 (15 deg)
aniso        factors (2^a, 2^-a), a ~ N(0, s^2)            s = 0.2           s = 0.1
xfrac        sub-pixel shift, each axis N(0, s^2) x size   s = 0.125         s = 0.03
lumaflip     invert, x -> 1 - x                            yes               --
cutout       zero a square of side c x size, centre U      --                --
=========== ============================================ ================= ==================

``AUG_NAIVE`` is ADA's default geometric + colour pipeline ("bgc") restricted to the ops defined on
one-channel binary images, with ADA's strengths, applied without regard to what a digit is: flips
and quarter turns change a digit's identity (a mirrored 2, 6 <-> 9) and ``lumaflip`` turns the
background white. ``AUG_TUNED`` keeps only the operations a handwritten digit is invariant to, at
milder strengths. ``cutout`` is available for custom pipelines.

Left out: ADA's brightness, contrast, hue and saturation (hue/saturation are undefined for one
channel; brightness/contrast either leave a binary image unchanged after re-binarization or make
it all-on / all-off), its image-space filtering and additive noise (they make grey images, and
their binary counterparts are not ADA operations).

Geometry: all geometric operations of one example are composed into one affine map (in pixel
coordinates about the image centre, as ADA does) and the image is resampled once with
:func:`dm_pix.affine_transform`, pixels from outside the image read as 0 (the digits' blank
background; ADA's reflection padding would mirror strokes). ``interpolation="nearest"``
(default) keeps images **exactly binary**; ``"bilinear"`` gives grey values in ``[0, 1]``
(acceptable targets of the Bernoulli likelihood's cross-entropy form, but no longer binary data).

Randomness: example ``i`` uses ``fold_in(key, i)``, and operation ``op`` of it
``fold_in(that, OPS.index(op))``, split into the coin (``u < b``) and the parameter draws; so an
op's draws do not change when other ops are added to a pipeline.
"""

from __future__ import annotations

import dataclasses
import math

import dm_pix
import jax
import jax.numpy as jnp

from jaxvae.config import check_in_range, check_nonnegative, check_one_of
from jaxvae.typing import PRNGKey

__all__ = ["AUG_NAIVE", "AUG_TUNED", "INTERPOLATIONS", "OPS", "AugmentConfig", "augment"]

OPS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "lumaflip", "cutout")
GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
INTERPOLATIONS = ("nearest", "bilinear")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """An augmentation pipeline: which ops, their probability ``b`` and strengths (hashable, jit-static).

    Attributes:
      ops: names from :data:`OPS`, applied in :data:`OPS` order (geometry first, then ``lumaflip``,
        then ``cutout``) whatever the order given.
      probability: ``b``, the probability of each op, independently per example and op.
      xint_max: integer shift bound, fraction of the image size.
      scale_std: std of ``log2`` of the isotropic scale factor.
      rotate_max: rotation bound, fraction of 180 degrees.
      aniso_std: std of ``log2`` of the anisotropic factor.
      xfrac_std: std of the sub-pixel shift, fraction of the image size.
      cutout_size: side of the cutout square, fraction of the image size.
      interpolation: ``"nearest"`` (binary stays binary) or ``"bilinear"``.
    """

    ops: tuple[str, ...]
    probability: float = 0.1
    xint_max: float = 0.125
    scale_std: float = 0.2
    rotate_max: float = 1.0
    aniso_std: float = 0.2
    xfrac_std: float = 0.125
    cutout_size: float = 0.5
    interpolation: str = "nearest"

    def __post_init__(self):
        ops = (self.ops,) if isinstance(self.ops, str) else tuple(self.ops)
        for op in ops:
            check_one_of("ops", op, OPS)
        if len(set(ops)) != len(ops):
            raise ValueError(f"`ops` must not repeat an operation; got {ops}.")
        object.__setattr__(self, "ops", tuple(op for op in OPS if op in ops))
        check_in_range("probability", self.probability, 0.0, 1.0)
        for name in ("xint_max", "scale_std", "aniso_std", "xfrac_std"):
            check_nonnegative(name, getattr(self, name))
        check_in_range("rotate_max", self.rotate_max, 0.0, 1.0)
        check_in_range("cutout_size", self.cutout_size, 0.0, 1.0)
        check_one_of("interpolation", self.interpolation, INTERPOLATIONS)

    def with_probability(self, probability: float) -> AugmentConfig:
        """The same pipeline with another ``b``."""
        return dataclasses.replace(self, probability=probability)


AUG_NAIVE = AugmentConfig(ops=("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "lumaflip"))
AUG_TUNED = AugmentConfig(
    ops=("xint", "scale", "rotate", "aniso", "xfrac"), scale_std=0.1, rotate_max=1 / 12, aniso_std=0.1, xfrac_std=0.03
)


def _op_keys(key: PRNGKey, op: str) -> tuple[jax.Array, jax.Array]:
    return tuple(jax.random.split(jax.random.fold_in(key, OPS.index(op))))


def _affine(rows: list[list]) -> jax.Array:
    return jnp.array([[jnp.asarray(v, jnp.float32) for v in r] for r in rows])


def _forward_matrix(key: PRNGKey, cfg: AugmentConfig, size: tuple[int, int]) -> jax.Array:
    """The composed forward (push) map ``[3, 3]`` in centred (row, col) homogeneous pixel coordinates."""
    h, w = size
    m = jnp.eye(3, dtype=jnp.float32)
    for op in cfg.ops:
        if op not in GEOMETRIC:
            continue
        k_coin, k_par = _op_keys(key, op)
        on = jax.random.uniform(k_coin) < cfg.probability
        if op == "xflip":
            g = jnp.diag(jnp.array([1.0, jnp.where(on, -1.0, 1.0), 1.0]))
        elif op == "rotate90":
            k = jnp.where(on, jax.random.randint(k_par, (), 0, 4), 0)
            c, s = jnp.array([1.0, 0.0, -1.0, 0.0])[k], jnp.array([0.0, 1.0, 0.0, -1.0])[k]
            g = _affine([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        elif op == "xint":
            t = jax.random.uniform(k_par, (2,), minval=-cfg.xint_max, maxval=cfg.xint_max)
            t = jnp.where(on, jnp.round(t * jnp.array([h, w], jnp.float32)), 0.0)
            g = _affine([[1.0, 0.0, t[0]], [0.0, 1.0, t[1]], [0.0, 0.0, 1.0]])
        elif op == "scale":
            s = jnp.where(on, jnp.exp2(cfg.scale_std * jax.random.normal(k_par)), 1.0)
            g = jnp.diag(jnp.stack([s, s, jnp.ones_like(s)]))
        elif op == "rotate":
            a = jnp.where(on, jax.random.uniform(k_par, minval=-1.0, maxval=1.0) * cfg.rotate_max * math.pi, 0.0)
            c, s = jnp.cos(a), jnp.sin(a)
            g = _affine([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        elif op == "aniso":
            s = jnp.where(on, jnp.exp2(cfg.aniso_std * jax.random.normal(k_par)), 1.0)
            g = jnp.diag(jnp.stack([s, 1.0 / s, jnp.ones_like(s)]))
        else:  # xfrac
            t = jnp.where(on, cfg.xfrac_std * jax.random.normal(k_par, (2,)) * jnp.array([h, w], jnp.float32), 0.0)
            g = _affine([[1.0, 0.0, t[0]], [0.0, 1.0, t[1]], [0.0, 0.0, 1.0]])
        m = g @ m
    return m


def _resample(x: jax.Array, forward: jax.Array, interpolation: str) -> jax.Array:
    """Pull-resample ``x [H, W, C]`` through the inverse of ``forward`` (about the image centre); outside = 0."""
    h, w, _ = x.shape
    centre = jnp.array([(h - 1) / 2.0, (w - 1) / 2.0], jnp.float32)
    inv = jnp.linalg.inv(forward)
    lin, t = inv[:2, :2], inv[:2, 2]
    offset2 = centre - lin @ centre + t  # input = lin @ (out - centre) + t + centre
    matrix = jnp.eye(3, dtype=jnp.float32).at[:2, :2].set(lin)
    offset = jnp.concatenate([offset2, jnp.zeros((1,), jnp.float32)])
    order = 0 if interpolation == "nearest" else 1
    return dm_pix.affine_transform(x, matrix, offset=offset, order=order, mode="constant", cval=0.0)


def _augment_one(key: PRNGKey, x: jax.Array, cfg: AugmentConfig) -> jax.Array:
    h, w, _ = x.shape
    if any(op in GEOMETRIC for op in cfg.ops):
        forward = _forward_matrix(key, cfg, (h, w))
        x = _resample(x, forward, cfg.interpolation)
    if "lumaflip" in cfg.ops:
        k_coin, _ = _op_keys(key, "lumaflip")
        x = jnp.where(jax.random.uniform(k_coin) < cfg.probability, 1.0 - x, x)
    if "cutout" in cfg.ops:
        k_coin, k_par = _op_keys(key, "cutout")
        on = jax.random.uniform(k_coin) < cfg.probability
        centre = jax.random.uniform(k_par, (2,)) * jnp.array([h, w], jnp.float32)
        half = 0.5 * cfg.cutout_size * jnp.array([h, w], jnp.float32)
        rows = jnp.abs(jnp.arange(h, dtype=jnp.float32) + 0.5 - centre[0]) < half[0]
        cols = jnp.abs(jnp.arange(w, dtype=jnp.float32) + 0.5 - centre[1]) < half[1]
        hole = on & rows[:, None, None] & cols[None, :, None]
        x = jnp.where(hole, jnp.zeros_like(x), x)
    return x


def augment(key: PRNGKey, x: jax.Array, config: AugmentConfig) -> jax.Array:
    """Augment a batch of images, each op applied to each example with probability ``config.probability``.

    Pure jax (jit / vmap / grad-free); call it inside the compiled train step on the device.

    Args:
      key: PRNG key (example ``i`` uses ``fold_in(key, i)``).
      x: float images ``[B, H, W, C]`` or ``[B, H, W]``, values in ``[0, 1]`` (binary for BinaryMNIST).
      config: the pipeline (:data:`AUG_NAIVE`, :data:`AUG_TUNED` or a custom :class:`AugmentConfig`).

    Returns:
      ``x``'s shape and dtype; binary inputs stay binary with ``interpolation="nearest"``.

    Raises:
      ValueError: for a non-float ``x`` of the wrong rank or a ``config`` that is not an :class:`AugmentConfig`.
    """
    if not isinstance(config, AugmentConfig):
        raise ValueError(f"`config` must be an AugmentConfig (e.g. AUG_TUNED); got {type(config).__name__}.")
    x = jnp.asarray(x)
    if x.ndim not in (3, 4) or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"`x` must be float images [B, H, W, C] or [B, H, W]; got {x.dtype} {x.shape}.")
    if not config.ops or config.probability == 0:
        return x
    squeeze = x.ndim == 3
    img = x[..., None] if squeeze else x
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(img.shape[0]))
    out = jax.vmap(_augment_one, in_axes=(0, 0, None))(keys, img.astype(jnp.float32), config).astype(x.dtype)
    return out[..., 0] if squeeze else out
