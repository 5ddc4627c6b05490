"""A small noise-conditional U-Net for diffusion models on small images (MNIST padded to 32x32x1).

``UNet()(x [B, H, W, C], noise_label [B]) -> [B, H, W, out_channels]``: the raw network ``F`` of a
diffusion model (see :func:`jaxvae.objectives.diffusion.edm_denoiser`, which feeds it
``c_in x`` and ``c_noise = ln(sigma) / 4``).

Layout (the DDPM / ADM family, trimmed to what a 32x32 digit needs)::

    noise_label -> sinusoidal features -> Dense -> SiLU -> Dense        (embedding e, width emb_dim)
    x -> Conv3x3(channels)
      level l = 0..L-1 (resolution H / 2^l, width channels * channel_mult[l]):
        num_res_blocks x [ResBlock(e) (+ self-attention at attn_resolutions)], Conv3x3 stride 2 between levels
      middle: ResBlock(e), self-attention, ResBlock(e)
      level l = L-1..0: (num_res_blocks + 1) x [concat skip, ResBlock(e) (+ attention)], nearest x2 + Conv3x3 up
    -> GroupNorm -> SiLU -> Conv3x3(out_channels)

ResBlock: ``GroupNorm -> SiLU -> Conv3x3 -> + Dense(SiLU(e)) -> GroupNorm -> SiLU -> Conv3x3``,
plus the (1x1-projected when widths differ) input, scaled by ``1/sqrt(2)`` so that the sum keeps
the variance of its terms. The last convolution of every block, of every attention projection and
the output layer start at zero, so the untrained network outputs 0 (then EDM's denoiser is
``c_skip x``) and each block starts as the identity.

Noise embedding: ``[cos(f_k t), sin(f_k t)]`` with ``channels / 2`` frequencies ``f_k``
log-spaced in ``[1, embed_max_freq]``: EDM's ``c_noise`` spans about ``[-1.6, 1.1]`` for
``sigma`` in ``[0.002, 80]``, so frequencies of order 1..100 resolve it finely.

Sizes: with ``channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,)`` the
net has 1.11M parameters (``tests/nets/test_unet.py`` counts them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae.config import check_positive_int
from jaxvae.nets.conv_ops import Conv  # the one place the convolution is chosen (nn.Conv's interface)

_SKIP_SCALE = 1.0 / math.sqrt(2.0)


def _check_groups(channels: int, num_groups: int, where: str) -> int:
    groups = min(num_groups, channels)
    if channels % groups:
        raise ValueError(
            f"`num_groups`={num_groups} must divide every width of the U-Net; {where} has {channels} channels."
        )
    return groups


def noise_embedding(t: jax.Array, dim: int, max_freq: float) -> jax.Array:
    """Sinusoidal features ``[B] -> [B, dim]``: ``cos`` and ``sin`` of ``t`` at ``dim / 2`` log-spaced frequencies."""
    freqs = jnp.exp(jnp.linspace(0.0, math.log(max_freq), dim // 2, dtype=t.dtype))
    angles = t[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


class ResBlock(nn.Module):
    """Residual block conditioned additively on the embedding: ``(x [B, H, W, C], e [B, E]) -> [B, H, W, features]``."""

    features: int
    num_groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        groups_in = _check_groups(x.shape[-1], self.num_groups, "a block input")
        groups_out = _check_groups(self.features, self.num_groups, "a block output")
        h = nn.silu(nn.GroupNorm(num_groups=groups_in, name="norm_0")(x))
        h = Conv(self.features, (3, 3), padding="SAME", name="conv_0")(h)
        h = h + nn.Dense(self.features, name="emb")(nn.silu(emb))[:, None, None, :]
        h = nn.silu(nn.GroupNorm(num_groups=groups_out, name="norm_1")(h))
        h = Conv(self.features, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros, name="conv_1")(h)
        skip = x if x.shape[-1] == self.features else Conv(self.features, (1, 1), name="skip")(x)
        return (h + skip) * _SKIP_SCALE


class SelfAttention(nn.Module):
    """Multi-head self-attention over the ``H * W`` positions, with a residual connection: ``[B, H, W, C]``."""

    num_heads: int = 1
    num_groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, hgt, wid, c = x.shape
        if c % self.num_heads:
            raise ValueError(f"`num_heads`={self.num_heads} must divide the attention width {c}.")
        h = nn.GroupNorm(num_groups=_check_groups(c, self.num_groups, "an attention input"), name="norm")(x)
        qkv = nn.Dense(3 * c, name="qkv")(h.reshape(b, hgt * wid, c))
        q, k, v = (a.reshape(b, hgt * wid, self.num_heads, c // self.num_heads) for a in jnp.split(qkv, 3, axis=-1))
        out = jax.nn.dot_product_attention(q, k, v).reshape(b, hgt * wid, c)
        out = nn.Dense(c, kernel_init=nn.initializers.zeros, name="proj")(out)
        return x + out.reshape(b, hgt, wid, c)


class UNet(nn.Module):
    """Noise-conditional U-Net ``(x [B, H, W, C], noise_label [B]) -> [B, H, W, out_channels]``.

    Attributes:
      channels: width of the first level.
      channel_mult: width multiplier of each level; ``len(channel_mult) - 1`` stride-2 downsamplings,
        so H and W must be divisible by ``2 ** (len(channel_mult) - 1)``.
      num_res_blocks: residual blocks per level on the way down (one more on the way up).
      attn_resolutions: spatial sizes (height) at which self-attention follows each block; the
        middle block always has attention unless this is empty.
      num_heads: attention heads.
      num_groups: GroupNorm groups (capped at the width; must divide every width).
      emb_dim: width of the noise embedding; default ``4 * channels``.
      out_channels: output channels; default the input's.
      embed_max_freq: largest frequency of the sinusoidal noise features.
    """

    channels: int = 32
    channel_mult: Sequence[int] = (1, 2, 2)
    num_res_blocks: int = 1
    attn_resolutions: Sequence[int] = (8,)
    num_heads: int = 1
    num_groups: int = 8
    emb_dim: int | None = None
    out_channels: int | None = None
    embed_max_freq: float = 64.0

    def _check(self, x: jax.Array, noise_label: jax.Array) -> None:
        for name in ("channels", "num_res_blocks", "num_heads", "num_groups"):
            check_positive_int(name, getattr(self, name), allow_zero=name == "num_res_blocks")
        if self.channels % 2:
            raise ValueError(f"`channels` must be even (sin/cos noise features); got {self.channels}.")
        mult = tuple(self.channel_mult)
        if not mult or not all(isinstance(m, int) and m >= 1 for m in mult):
            raise ValueError(
                f"`channel_mult` must be a non-empty sequence of positive ints; got {self.channel_mult!r}."
            )
        if not (self.embed_max_freq >= 1.0):
            raise ValueError(f"`embed_max_freq` must be >= 1; got {self.embed_max_freq!r}.")
        if x.ndim != 4:
            raise ValueError(f"`x` must be [B, H, W, C]; got shape {x.shape}.")
        f = 2 ** (len(mult) - 1)
        if x.shape[1] % f or x.shape[2] % f:
            raise ValueError(
                f"`x` height and width must be divisible by {f} ({len(mult) - 1} downsamplings); got shape {x.shape}."
            )
        if noise_label.shape != x.shape[:1]:
            raise ValueError(f"`noise_label` must have shape [B] = {x.shape[:1]}; got {noise_label.shape}.")

    @nn.compact
    def __call__(self, x: jax.Array, noise_label: jax.Array) -> jax.Array:
        noise_label = jnp.asarray(noise_label, x.dtype)
        self._check(x, noise_label)
        mult = tuple(self.channel_mult)
        attn_at = set(int(r) for r in self.attn_resolutions)
        emb_dim = self.emb_dim or 4 * self.channels
        out_channels = self.out_channels or x.shape[-1]
        groups, heads = self.num_groups, self.num_heads

        emb = noise_embedding(noise_label, self.channels, self.embed_max_freq)
        emb = nn.Dense(emb_dim, name="emb_0")(emb)
        emb = nn.Dense(emb_dim, name="emb_1")(nn.silu(emb))

        h = Conv(self.channels, (3, 3), padding="SAME", name="conv_in")(x)
        skips = [h]
        for level, m in enumerate(mult):
            for i in range(self.num_res_blocks):
                h = ResBlock(self.channels * m, groups, name=f"down_{level}_block_{i}")(h, emb)
                if h.shape[1] in attn_at:
                    h = SelfAttention(heads, groups, name=f"down_{level}_attn_{i}")(h)
                skips.append(h)
            if level < len(mult) - 1:
                h = Conv(h.shape[-1], (3, 3), strides=(2, 2), padding="SAME", name=f"down_{level}_resample")(h)
                skips.append(h)

        h = ResBlock(h.shape[-1], groups, name="mid_block_0")(h, emb)
        if attn_at:
            h = SelfAttention(heads, groups, name="mid_attn")(h)
        h = ResBlock(h.shape[-1], groups, name="mid_block_1")(h, emb)

        for level in reversed(range(len(mult))):
            for i in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = ResBlock(self.channels * mult[level], groups, name=f"up_{level}_block_{i}")(h, emb)
                if h.shape[1] in attn_at:
                    h = SelfAttention(heads, groups, name=f"up_{level}_attn_{i}")(h)
            if level > 0:
                h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)  # nearest-neighbour x2
                h = Conv(h.shape[-1], (3, 3), padding="SAME", name=f"up_{level}_resample")(h)

        h = nn.silu(nn.GroupNorm(num_groups=_check_groups(h.shape[-1], groups, "the output"), name="norm_out")(h))
        return Conv(out_channels, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros, name="conv_out")(h)
