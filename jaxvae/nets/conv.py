"""Convolutional encoder/decoder pair for small images (28x28x1 MNIST by default).

Encoder: two stride-2 convolutions (32, 64 channels, 4x4 kernels, 'SAME' padding: 28 -> 14 -> 7),
flatten, one dense layer. Decoder: the mirror image, a dense layer to ``7 x 7 x 64``, then two
stride-2 transposed convolutions (64 -> 32 -> out channels: 7 -> 14 -> 28). Both accept any
number of leading batch axes (they are folded into one for the convolutions). The convolutions are
:mod:`jaxvae.nets.conv_ops`' (flax's parameters; a fast backward pass on the CPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax

from jaxvae.nets.conv_ops import Conv, ConvTranspose
from jaxvae.nets.mlp import Activation, get_activation


def _check_image_shape(image_shape: Sequence[int], num_down: int) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"`image_shape` must be (H, W, C) with positive sizes; got {shape}.")
    h, w, _ = shape
    f = 2**num_down
    if h % f or w % f:
        raise ValueError(
            f"`image_shape` height and width must be divisible by {f} ({num_down} stride-2 layers); got {shape}."
        )
    return shape


class ConvEncoder(nn.Module):
    """``[..., H, W, C] -> [..., hidden]`` with strided convolutions and one dense layer.

    Attributes:
      image_shape: (H, W, C) of the input; H, W divisible by ``2**len(channels)``.
      channels: output channels of each stride-2 convolution.
      hidden: width of the dense layer after flattening.
      kernel_size: square kernel size of the convolutions.
      activation: name or callable, applied after every layer (the output is activated: a head follows).
    """

    image_shape: Sequence[int] = (28, 28, 1)
    channels: Sequence[int] = (32, 64)
    hidden: int = 256
    kernel_size: int = 4
    activation: Activation = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = _check_image_shape(self.image_shape, len(self.channels))
        if x.shape[-3:] != shape:
            raise ValueError(f"`x` must end with the image shape {shape}; got shape {x.shape}.")
        act = get_activation(self.activation)
        lead = x.shape[:-3]
        h = x.reshape((-1,) + shape)
        for i, c in enumerate(self.channels):
            h = act(Conv(int(c), (self.kernel_size,) * 2, strides=2, padding="SAME", name=f"conv_{i}")(h))
        h = h.reshape((h.shape[0], -1))
        h = act(nn.Dense(int(self.hidden), name="dense")(h))
        return h.reshape(lead + (int(self.hidden),))


class ConvDecoder(nn.Module):
    """``[..., D] -> [..., H, W, C]`` (unconstrained outputs, e.g. Bernoulli logits).

    Mirrors :class:`ConvEncoder`: a dense layer (activated) to ``hidden``, a dense layer to the
    ``(H / 2**L, W / 2**L, channels[-1])`` grid, then ``L`` stride-2 transposed convolutions
    through ``reversed(channels)``, the last one emitting ``C`` channels with no activation.

    Attributes:
      image_shape: (H, W, C) of the output.
      channels: the encoder's channel list (used in reverse).
      hidden: width of the first dense layer.
      kernel_size: square kernel size of the transposed convolutions.
      activation: name or callable for the hidden layers.
    """

    image_shape: Sequence[int] = (28, 28, 1)
    channels: Sequence[int] = (32, 64)
    hidden: int = 256
    kernel_size: int = 4
    activation: Activation = "relu"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        shape = _check_image_shape(self.image_shape, len(self.channels))
        if z.ndim < 1:
            raise ValueError(f"`z` must have at least 1 dimension (latent last); got shape {z.shape}.")
        act = get_activation(self.activation)
        h_img, w_img, c_img = shape
        f = 2 ** len(self.channels)
        lead = z.shape[:-1]
        h = z.reshape((-1, z.shape[-1]))
        h = act(nn.Dense(int(self.hidden), name="dense_0")(h))
        grid = (h_img // f, w_img // f, int(self.channels[-1]))
        h = act(nn.Dense(math.prod(grid), name="dense_1")(h))
        h = h.reshape((-1,) + grid)
        outs = list(reversed([int(c) for c in self.channels[:-1]])) + [c_img]
        for i, c in enumerate(outs):
            h = ConvTranspose(c, (self.kernel_size,) * 2, strides=(2, 2), padding="SAME", name=f"deconv_{i}")(h)
            if i < len(outs) - 1:
                h = act(h)
        return h.reshape(lead + shape)
