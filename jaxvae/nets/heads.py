"""Heads: dense layers that map features to distribution parameters.

``GaussianHead`` returns ``(loc, log_var)`` for a diagonal Gaussian. Two parameterisations of
the variance are offered:

- ``"softplus"`` (the default, and the stable one): ``sigma = softplus(s) + min_scale``,
  ``log_var = 2 log sigma``. The standard deviation grows only linearly in the raw output ``s``,
  the reparameterised sample ``mu + sigma * eps`` and the KL gradient stay polynomial in ``s``,
  and ``min_scale`` keeps ``log sigma`` bounded below, so one bad step cannot overflow.
- ``"log_var"``: ``log_var = s`` as in Kingma & Welling (2014); ``sigma = exp(s / 2)`` grows
  exponentially, so a large step can produce ``inf`` (kept for fidelity to the paper).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae.config import check_one_of

SCALE_PARAMS = ("softplus", "log_var")


def gaussian_scale(log_var: jax.Array) -> jax.Array:
    """``sigma = exp(log_var / 2)``."""
    return jnp.exp(0.5 * log_var)


class GaussianHead(nn.Module):
    """``[..., F] -> (loc [..., latent_dim], log_var [..., latent_dim])``.

    Attributes:
      latent_dim: D, the number of latent units.
      scale_param: ``"softplus"`` (default) or ``"log_var"``; see the module docstring.
      min_scale: lower bound on ``sigma`` under ``"softplus"``.
      init_scale: ``"softplus"`` only: the scale layer's bias starts at ``softplus^{-1}(init_scale)``,
        so that ``sigma`` starts near ``init_scale + min_scale``; ``None`` starts the bias at 0
        (``sigma`` near ``log 2``).
      kernel_init: initialiser of both layers' kernels (Flax's default: LeCun normal).
    """

    latent_dim: int
    scale_param: str = "softplus"
    min_scale: float = 1e-4
    init_scale: float | None = None
    kernel_init: Callable = nn.linear.default_kernel_init

    @nn.compact
    def __call__(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        check_one_of("scale_param", self.scale_param, SCALE_PARAMS)
        if int(self.latent_dim) <= 0:
            raise ValueError(f"`latent_dim` must be a positive int; got {self.latent_dim!r}.")
        if self.init_scale is not None and (self.scale_param != "softplus" or not self.init_scale > 0):
            raise ValueError(
                f"`init_scale` must be None or > 0 with scale_param='softplus'; got {self.init_scale!r} "
                f"with scale_param={self.scale_param!r}."
            )
        loc = nn.Dense(int(self.latent_dim), kernel_init=self.kernel_init, name="loc")(h)
        bias_init = nn.initializers.zeros
        if self.init_scale is not None:  # softplus^{-1}(s) = log(expm1(s))
            bias_init = nn.initializers.constant(math.log(math.expm1(self.init_scale)))
        raw = nn.Dense(int(self.latent_dim), kernel_init=self.kernel_init, bias_init=bias_init, name="scale")(h)
        if self.scale_param == "log_var":
            return loc, raw
        scale = jax.nn.softplus(raw) + self.min_scale
        return loc, 2.0 * jnp.log(scale)


class LogitsHead(nn.Module):
    """``[..., F] -> [..., *event_shape]`` unconstrained outputs (e.g. Bernoulli logits).

    Attributes:
      event_shape: trailing shape of the output, e.g. ``(784,)`` or ``(28, 28, 1)``.
    """

    event_shape: tuple[int, ...]

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        shape = tuple(int(s) for s in self.event_shape)
        out = nn.Dense(math.prod(shape), name="dense")(h)
        return out.reshape(h.shape[:-1] + shape)
