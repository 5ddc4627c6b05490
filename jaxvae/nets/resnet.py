r"""ResNetV2 (pre-activation) encoder and decoder of Rivera's VAE-GAN.

M. Rivera, "How to train your VAE", arXiv:2309.13160; its code ``marianorivera/How2TrainUrVAE``,
``reader.py``.

Every residual branch is pre-activated, BN -> ReLU -> conv (He et al., 2016, "Identity mappings
in deep residual networks"). The three blocks:

* :class:`ResBlockIdV2` (width ``f``, input width ``f``): ``x + T(x)`` with the bottleneck
  ``T = [BN-ReLU-Conv3x3(f)] -> [BN-ReLU-Conv3x3(f)] -> [BN-ReLU-Conv1x1(f)]``.
* :class:`ResBlockConvV2` (downsampling by ``stride``): ``T_s(x) + [BN-ReLU-Conv1x1(f, stride)](x)``,
  where ``T_s`` is ``T`` with the stride on its last (1x1) convolution.
* :class:`ResBlockConvTV2` (upsampling by ``stride``):
  ``[BN-ReLU-Conv1x1(f)] -> [BN-ReLU-ConvT3x3(f, stride)]`` plus the shortcut
  ``[BN-ReLU-ConvT3x3(f, stride)](x)``.

:class:`ResNetV2Encoder` (``[..., H, W, C] -> (loc, log_var)``, each ``[..., latent_dim]``):
LayerNorm over (H, W) per channel (scale and bias of shape ``[H, W]``, as Keras'
``LayerNormalization(axis=(1, 2))``) -> Conv3x3(``widths[0]``) -> for each stage ``s``:
``blocks_per_stage`` x ``ResBlockIdV2(widths[s])`` then ``ResBlockConvV2(widths[s + 1])`` (stride 2)
-> Conv1x1(``bottleneck_channels``) -> flatten -> :class:`~jaxvae.nets.heads.GaussianHead`.

:class:`ResNetV2Decoder` (``[..., latent_dim] -> [..., H, W, C]``, unconstrained): Dense to the
``(H / 2**S, W / 2**S, bottleneck_channels)`` grid -> Conv3x3(``widths[0]``) -> for each stage:
``blocks_per_stage`` x ``ResBlockIdV2(widths[s])`` then ``ResBlockConvTV2(widths[s + 1])`` (stride 2)
-> Conv1x1(C), no output activation (Rivera's decoder is linear; data in [-1, 1]).

The paper's configuration (:data:`RIVERA_ENCODER`, :data:`RIVERA_DECODER`): 256x256x3, six stages
of width 128, two identity blocks per encoder stage and one per decoder stage, decoder widths
``(128,) * 6 + (3,)``, a 4x4x64 bottleneck (``latent_dim // 8`` channels), latent 512. Its
parameters (``params`` + ``batch_stats``) number 6,932,544 (encoder, of which 1,049,600 in the
Gaussian head) + 4,049,522 (decoder) = 10,982,066; the authors' Keras summary (9,932,466) is this
total without the Gaussian head, whose Keras layer builds lazily and was not yet built when the
summary was printed (``tests/nets/test_resnet.py`` checks both numbers).

A CPU-sized configuration for MNIST padded to 32x32 (the stand-in; three stages 32 -> 4)::

    ResNetV2Encoder(image_shape=(32, 32, 1), latent_dim=32, widths=(32, 32, 32, 32),
                    blocks_per_stage=1, bottleneck_channels=8)       # 134,056 parameters
    ResNetV2Decoder(image_shape=(32, 32, 1), widths=(32, 32, 32, 32),
                    blocks_per_stage=1, bottleneck_channels=8)       # 126,209 parameters

Conventions: ``train`` (keyword, required) selects batch statistics (and updates the
``batch_stats`` collection: apply with ``mutable=["batch_stats"]``) or the running averages.
BatchNorm uses Keras' defaults (momentum 0.99, epsilon 1e-3), convolutions and dense layers
Keras' Glorot-uniform initialisation with zero biases. Leading batch axes ``[...]`` are folded
into one for the convolutions (BatchNorm statistics are taken over all of them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxvae.config import as_widths, check_positive_int
from jaxvae.nets.conv_ops import Conv, ConvTranspose  # the one place the convolutions are chosen
from jaxvae.nets.heads import SCALE_PARAMS, GaussianHead

KERAS_BN_MOMENTUM = 0.99
KERAS_BN_EPSILON = 1e-3
KERAS_LN_EPSILON = 1e-3
_KERNEL_INIT = nn.initializers.glorot_uniform()


def _check_widths(name: str, widths: Sequence[int]) -> tuple[int, ...]:
    w = as_widths(name, widths)
    if len(w) < 2:
        raise ValueError(f"`{name}` must hold at least 2 widths (the stem's, then one per stage); got {widths!r}.")
    return w


def _check_image_shape(image_shape: Sequence[int], num_stages: int) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"`image_shape` must be (H, W, C) with positive sizes; got {image_shape!r}.") from None
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"`image_shape` must be (H, W, C) with positive sizes; got {image_shape!r}.")
    f = 2**num_stages
    if shape[0] % f or shape[1] % f:
        raise ValueError(
            f"`image_shape` height and width must be divisible by {f} ({num_stages} stride-2 stages); got {shape}."
        )
    return shape


class _PreAct(nn.Module):
    """``BN -> ReLU`` (the pre-activation of every residual branch)."""

    momentum: float = KERAS_BN_MOMENTUM
    epsilon: float = KERAS_BN_EPSILON
    axis_name: str | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        bn = nn.BatchNorm(
            use_running_average=not train,
            momentum=self.momentum,
            epsilon=self.epsilon,
            axis_name=self.axis_name,
            dtype=self.dtype,
            name="bn",
        )
        return nn.relu(bn(x))


class _Block(nn.Module):
    """Shared fields of the residual blocks."""

    features: int
    bn_momentum: float = KERAS_BN_MOMENTUM
    bn_epsilon: float = KERAS_BN_EPSILON
    bn_axis_name: str | None = None
    dtype: Any = None

    def preact(self, name: str) -> _PreAct:
        return _PreAct(self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.dtype, name=name)

    def conv(self, k: int, stride: int, name: str) -> nn.Module:
        return Conv(
            self.features, (k, k), strides=stride, padding="SAME", kernel_init=_KERNEL_INIT, dtype=self.dtype, name=name
        )

    def conv_t(self, k: int, stride: int, name: str) -> nn.Module:
        return ConvTranspose(
            self.features,
            (k, k),
            strides=(stride, stride),
            padding="SAME",
            kernel_init=_KERNEL_INIT,
            dtype=self.dtype,
            name=name,
        )

    def bottleneck(self, x: jax.Array, stride: int, train: bool) -> jax.Array:
        """``[BN-ReLU-Conv3x3] -> [BN-ReLU-Conv3x3] -> [BN-ReLU-Conv1x1(stride)]``."""
        y = self.conv(3, 1, "conv_0")(self.preact("preact_0")(x, train=train))
        y = self.conv(3, 1, "conv_1")(self.preact("preact_1")(y, train=train))
        return self.conv(1, stride, "conv_2")(self.preact("preact_2")(y, train=train))


class ResBlockIdV2(_Block):
    """Identity block ``[..., H, W, f] -> [..., H, W, f]``: ``x + T(x)`` (see the module docstring).

    Attributes:
      features: ``f``; must equal the input's channel count.
    """

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if x.shape[-1] != self.features:
            raise ValueError(
                f"ResBlockIdV2: `x` must have {self.features} channels (the block's width) for the identity "
                f"shortcut; got shape {x.shape}."
            )
        return x + self.bottleneck(x, 1, train)


class ResBlockConvV2(_Block):
    """Downsampling block ``[..., H, W, c] -> [..., H/s, W/s, f]``: ``T_s(x) + Conv1x1_s(BN-ReLU(x))``.

    Attributes:
      features: ``f``, output channels.
      stride: ``s``, on the last 1x1 convolution of the bottleneck and on the shortcut.
    """

    stride: int = 2

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        y = self.bottleneck(x, self.stride, train)
        shortcut = self.conv(1, self.stride, "shortcut_conv")(self.preact("shortcut_preact")(x, train=train))
        return y + shortcut


class ResBlockConvTV2(_Block):
    """Upsampling block ``[..., H, W, c] -> [..., s H, s W, f]``.

    ``[BN-ReLU-Conv1x1(f)] -> [BN-ReLU-ConvT3x3(f, s)]`` plus the shortcut ``[BN-ReLU-ConvT3x3(f, s)](x)``.

    Attributes:
      features: ``f``, output channels.
      stride: ``s``, the upsampling factor of both transposed convolutions.
    """

    stride: int = 2

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        y = self.conv(1, 1, "conv_0")(self.preact("preact_0")(x, train=train))
        y = self.conv_t(3, self.stride, "conv_t_1")(self.preact("preact_1")(y, train=train))
        shortcut = self.conv_t(3, self.stride, "shortcut_conv_t")(self.preact("shortcut_preact")(x, train=train))
        return y + shortcut


class ResNetV2Encoder(nn.Module):
    """``[..., H, W, C] -> (loc, log_var)``, each ``[..., latent_dim]`` (see the module docstring).

    Attributes:
      image_shape: ``(H, W, C)``; H and W divisible by ``2 ** (len(widths) - 1)``.
      latent_dim: ``D``.
      widths: stem width, then the output width of each stage (``len(widths) - 1`` stride-2 stages).
      blocks_per_stage: identity blocks before each downsampling block (Rivera: 2).
      bottleneck_channels: channels of the 1x1 conv before flattening; default ``max(1, latent_dim // 8)``
        (Rivera: 512 // 8 = 64, a 4x4x64 = 1024-d feature).
      input_norm: LayerNorm over (H, W) on the input, with ``[H, W]`` scale and bias (Rivera: on).
      scale_param: the Gaussian head's variance parameterisation (``"log_var"``, Rivera's linear
        log-variance, or ``"softplus"``); see :mod:`jaxvae.nets.heads`.
      bn_momentum, bn_epsilon: BatchNorm settings (Keras defaults 0.99, 1e-3).
      bn_axis_name: mapped axis over which BatchNorm averages batch statistics (``pmap``/``shard_map``);
        ``None`` under ``jit`` with shardings, where the batch mean is already global.
      dtype: computation dtype of the trunk (e.g. ``jnp.bfloat16``); parameters stay float32 and
        the Gaussian head computes in float32.
    """

    image_shape: Sequence[int] = (256, 256, 3)
    latent_dim: int = 512
    widths: Sequence[int] = (128,) * 7
    blocks_per_stage: int = 2
    bottleneck_channels: int | None = None
    input_norm: bool = True
    scale_param: str = "log_var"
    bn_momentum: float = KERAS_BN_MOMENTUM
    bn_epsilon: float = KERAS_BN_EPSILON
    bn_axis_name: str | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        widths = _check_widths("widths", self.widths)
        shape = _check_image_shape(self.image_shape, len(widths) - 1)
        latent = check_positive_int("latent_dim", self.latent_dim)
        blocks = check_positive_int("blocks_per_stage", self.blocks_per_stage, allow_zero=True)
        bottleneck = self.bottleneck_channels if self.bottleneck_channels is not None else max(1, latent // 8)
        bottleneck = check_positive_int("bottleneck_channels", bottleneck)
        if self.scale_param not in SCALE_PARAMS:
            raise ValueError(f"`scale_param` must be one of {SCALE_PARAMS}; got {self.scale_param!r}.")
        if x.shape[-3:] != shape:
            raise ValueError(f"`x` must end with the image shape {shape} ([..., H, W, C]); got shape {x.shape}.")
        lead = x.shape[:-3]
        h = x.reshape((-1,) + shape)
        if self.input_norm:
            h = nn.LayerNorm(
                epsilon=KERAS_LN_EPSILON,
                reduction_axes=(1, 2),
                feature_axes=(1, 2),
                dtype=self.dtype,
                name="input_norm",
            )(h)
        h = Conv(widths[0], (3, 3), padding="SAME", kernel_init=_KERNEL_INIT, dtype=self.dtype, name="stem")(h)
        kw = dict(
            bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, bn_axis_name=self.bn_axis_name, dtype=self.dtype
        )
        for s in range(len(widths) - 1):
            for b in range(blocks):
                h = ResBlockIdV2(widths[s], **kw, name=f"stage_{s}_id_{b}")(h, train=train)
            h = ResBlockConvV2(widths[s + 1], stride=2, **kw, name=f"stage_{s}_down")(h, train=train)
        h = Conv(bottleneck, (1, 1), padding="SAME", kernel_init=_KERNEL_INIT, dtype=self.dtype, name="bottleneck")(h)
        h = h.reshape((h.shape[0], -1))
        loc, log_var = GaussianHead(latent, scale_param=self.scale_param, name="head")(h)
        return loc.reshape(lead + (latent,)), log_var.reshape(lead + (latent,))


class ResNetV2Decoder(nn.Module):
    """``[..., latent_dim] -> [..., H, W, C]`` unconstrained (linear) images (see the module docstring).

    Attributes:
      image_shape: ``(H, W, C)`` of the output; H and W divisible by ``2 ** (len(widths) - 1)``.
      widths: stem width, then the output width of each upsampling stage (Rivera: ``(128,) * 6 + (3,)``).
      blocks_per_stage: identity blocks before each upsampling block (Rivera: 1).
      bottleneck_channels: channels of the starting grid ``(H / 2**S, W / 2**S, bottleneck_channels)``;
        default ``max(1, latent_dim // 8)`` with ``latent_dim`` read from the input's last axis.
      bn_momentum, bn_epsilon, bn_axis_name, dtype: as in :class:`ResNetV2Encoder`.
    """

    image_shape: Sequence[int] = (256, 256, 3)
    widths: Sequence[int] = (128,) * 6 + (3,)
    blocks_per_stage: int = 1
    bottleneck_channels: int | None = None
    bn_momentum: float = KERAS_BN_MOMENTUM
    bn_epsilon: float = KERAS_BN_EPSILON
    bn_axis_name: str | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        widths = _check_widths("widths", self.widths)
        num_stages = len(widths) - 1
        h_img, w_img, c_img = _check_image_shape(self.image_shape, num_stages)
        blocks = check_positive_int("blocks_per_stage", self.blocks_per_stage, allow_zero=True)
        if z.ndim < 1 or z.shape[-1] < 1:
            raise ValueError(f"`z` must be [..., latent_dim] with latent_dim >= 1; got shape {z.shape}.")
        latent = z.shape[-1]
        bottleneck = self.bottleneck_channels if self.bottleneck_channels is not None else max(1, latent // 8)
        bottleneck = check_positive_int("bottleneck_channels", bottleneck)
        f = 2**num_stages
        grid = (h_img // f, w_img // f, bottleneck)
        lead = z.shape[:-1]
        h = z.reshape((-1, latent))
        h = nn.Dense(math.prod(grid), kernel_init=_KERNEL_INIT, dtype=self.dtype, name="dense")(h)
        h = h.reshape((-1,) + grid)
        h = Conv(widths[0], (3, 3), padding="SAME", kernel_init=_KERNEL_INIT, dtype=self.dtype, name="stem")(h)
        kw = dict(
            bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, bn_axis_name=self.bn_axis_name, dtype=self.dtype
        )
        for s in range(num_stages):
            for b in range(blocks):
                h = ResBlockIdV2(widths[s], **kw, name=f"stage_{s}_id_{b}")(h, train=train)
            h = ResBlockConvTV2(widths[s + 1], stride=2, **kw, name=f"stage_{s}_up")(h, train=train)
        h = Conv(c_img, (1, 1), padding="SAME", kernel_init=_KERNEL_INIT, dtype=self.dtype, name="out")(h)
        return h.reshape(lead + (h_img, w_img, c_img))


RIVERA_ENCODER = ResNetV2Encoder()
"""The paper's encoder: 256x256x3, latent 512, widths ``(128,) * 7``, 2 identity blocks per stage."""

RIVERA_DECODER = ResNetV2Decoder()
"""The paper's decoder: 256x256x3, widths ``(128,) * 6 + (3,)``, 1 identity block per stage."""


def count_parameters(variables: Any, collections: Sequence[str] = ("params", "batch_stats")) -> int:
    """Number of scalars in the given collections of a Linen variable dict (Keras' "Total params").

    Keras counts BatchNormalization's moving mean and variance as (non-trainable) parameters, so
    ``params + batch_stats`` is the number comparable with a Keras summary. Works on the
    ``jax.ShapeDtypeStruct`` trees of ``jax.eval_shape`` too.
    """
    total = 0
    for c in collections:
        total += sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(variables.get(c, {})))
    return int(total)
