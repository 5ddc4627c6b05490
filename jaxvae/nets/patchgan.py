r"""PatchGAN discriminator (Isola et al., 2017) in the form of Rivera's VAE-GAN.

M. Rivera, "How to train your VAE", arXiv:2309.13160; its code ``marianorivera/How2TrainUrVAE``,
``discriminator.py``.

``[..., H, W, C] -> [..., H', W', features[-1]]``: a map of logits, one per receptive-field patch
(``H' = H / prod(strides)``; 32x32x1 for a 256x256 input at the paper's strides). Layer ``i``::

    Conv(features[i], kernel_size, strides[i], 'SAME') -> BatchNorm -> LeakyReLU -> Dropout(rate)

with no LeakyReLU after the last convolution. As in the official code, BatchNorm and dropout are
applied after the last convolution too, i.e. to the logit map itself (``norm_logits=True``, the
default; ``False`` leaves the last convolution's output as the logits).

The paper's configuration (:data:`RIVERA_PATCHGAN`): features ``(128, 128, 128, 64, 64, 1)``,
kernel 3, strides ``(2, 2, 2, 1, 1, 1)``, dropout 0.25, LeakyReLU slope 0.3 (Keras' default),
412,101 parameters (``params`` + ``batch_stats``), equal to the authors' Keras summary.

Modes: ``train`` (keyword, required) selects batch statistics (update ``batch_stats`` with
``mutable=["batch_stats"]``) and active dropout, whose key is passed explicitly:
``apply(variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxvae.config import as_widths, check_in_range, check_nonnegative, check_positive_int
from jaxvae.nets.conv_ops import Conv  # the one place the convolution is chosen (flax's parameters)
from jaxvae.nets.resnet import KERAS_BN_EPSILON, KERAS_BN_MOMENTUM

_KERNEL_INIT = nn.initializers.glorot_uniform()  # Keras' default


class PatchGAN(nn.Module):
    """Patch discriminator ``[..., H, W, C] -> [..., H', W', features[-1]]`` logits.

    Attributes:
      features: output channels of each convolution; the last is the number of logit maps (1).
      strides: one stride per convolution (same length as ``features``).
      kernel_size: square kernel of every convolution.
      use_batch_norm: BatchNorm after every convolution.
      dropout_rate: dropout after every layer, in ``[0, 1)`` (0 disables it).
      negative_slope: LeakyReLU slope (Keras' default 0.3; PyTorch's is 0.01, pix2pix uses 0.2).
      norm_logits: apply BatchNorm and dropout after the last convolution as well (the official code).
      bn_momentum, bn_epsilon: BatchNorm settings (Keras defaults 0.99, 1e-3).
      bn_axis_name: mapped axis over which BatchNorm averages batch statistics (``pmap``/``shard_map``).
      dtype: computation dtype; parameters stay float32.
    """

    features: Sequence[int] = (128, 128, 128, 64, 64, 1)
    strides: Sequence[int] = (2, 2, 2, 1, 1, 1)
    kernel_size: int = 3
    use_batch_norm: bool = True
    dropout_rate: float = 0.25
    negative_slope: float = 0.3
    norm_logits: bool = True
    bn_momentum: float = KERAS_BN_MOMENTUM
    bn_epsilon: float = KERAS_BN_EPSILON
    bn_axis_name: str | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        features = as_widths("features", self.features)
        strides = as_widths("strides", self.strides)
        if len(strides) != len(features):
            raise ValueError(
                f"`strides` must have one entry per convolution ({len(features)}, the length of `features`); "
                f"got {self.strides!r}."
            )
        k = check_positive_int("kernel_size", self.kernel_size)
        rate = check_in_range("dropout_rate", self.dropout_rate, 0.0, 1.0, high_closed=False)
        slope = check_nonnegative("negative_slope", self.negative_slope)
        if x.ndim < 3:
            raise ValueError(f"`x` must be [..., H, W, C] images; got shape {x.shape}.")
        factor = 1
        for s in strides:
            factor *= s
        if x.shape[-3] % factor or x.shape[-2] % factor:
            raise ValueError(
                f"`x` height and width must be divisible by the product of `strides` ({factor}); got shape {x.shape}."
            )
        lead = x.shape[:-3]
        h = x.reshape((-1,) + x.shape[-3:])
        last = len(features) - 1
        for i, (f, s) in enumerate(zip(features, strides)):
            h = Conv(
                f, (k, k), strides=s, padding="SAME", kernel_init=_KERNEL_INIT, dtype=self.dtype, name=f"conv_{i}"
            )(h)
            if i == last and not self.norm_logits:
                break
            if self.use_batch_norm:
                h = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=self.bn_momentum,
                    epsilon=self.bn_epsilon,
                    axis_name=self.bn_axis_name,
                    dtype=self.dtype,
                    name=f"bn_{i}",
                )(h)
            if i < last:
                h = nn.leaky_relu(h, negative_slope=slope)
            if rate > 0:
                h = nn.Dropout(rate, deterministic=not train, name=f"dropout_{i}")(h)
        return h.reshape(lead + h.shape[1:])


RIVERA_PATCHGAN = PatchGAN()
"""The paper's discriminator: 6 convolutions ``(128, 128, 128, 64, 64, 1)``, strides ``(2, 2, 2, 1, 1, 1)``."""
