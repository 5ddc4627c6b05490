"""Linen modules mapping arrays to distribution parameters."""

from jaxvae.nets.conv import ConvDecoder, ConvEncoder
from jaxvae.nets.heads import GaussianHead, LogitsHead, gaussian_scale
from jaxvae.nets.mlp import ACTIVATIONS, MLP, get_activation
from jaxvae.nets.unet import UNet

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "ConvDecoder",
    "ConvEncoder",
    "GaussianHead",
    "LogitsHead",
    "UNet",
    "gaussian_scale",
    "get_activation",
]
