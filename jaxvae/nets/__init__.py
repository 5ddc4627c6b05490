"""Linen modules mapping arrays to distribution parameters."""

from jaxvae.nets.conv import ConvDecoder, ConvEncoder
from jaxvae.nets.conv_ops import Conv, ConvTranspose
from jaxvae.nets.heads import GaussianHead, LogitsHead, gaussian_scale
from jaxvae.nets.mlp import ACTIVATIONS, MLP, get_activation
from jaxvae.nets.patchgan import RIVERA_PATCHGAN, PatchGAN
from jaxvae.nets.resnet import (
    RIVERA_DECODER,
    RIVERA_ENCODER,
    ResBlockConvTV2,
    ResBlockConvV2,
    ResBlockIdV2,
    ResNetV2Decoder,
    ResNetV2Encoder,
    count_parameters,
)
from jaxvae.nets.unet import UNet

__all__ = [
    "ACTIVATIONS",
    "Conv",
    "ConvDecoder",
    "ConvEncoder",
    "ConvTranspose",
    "GaussianHead",
    "LogitsHead",
    "MLP",
    "PatchGAN",
    "RIVERA_DECODER",
    "RIVERA_ENCODER",
    "RIVERA_PATCHGAN",
    "ResBlockConvTV2",
    "ResBlockConvV2",
    "ResBlockIdV2",
    "ResNetV2Decoder",
    "ResNetV2Encoder",
    "UNet",
    "count_parameters",
    "gaussian_scale",
    "get_activation",
]
