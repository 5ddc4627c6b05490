"""Multi-layer perceptron and the activation-name table shared by the nets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax

Activation = str | Callable[[jax.Array], jax.Array]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "swish": nn.swish,
    "softplus": nn.softplus,
    "leaky_relu": nn.leaky_relu,
    "sigmoid": nn.sigmoid,
    "identity": lambda x: x,
}


def get_activation(activation: Activation) -> Callable[[jax.Array], jax.Array]:
    """Resolve an activation given by name (see ``ACTIVATIONS``) or as a callable.

    Raises:
      ValueError: if ``activation`` is an unknown name or neither a string nor a callable.
    """
    if callable(activation):
        return activation
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    raise ValueError(f"`activation` must be a callable or one of {sorted(ACTIVATIONS)}; got {activation!r}.")


class MLP(nn.Module):
    """A stack of ``Dense`` layers acting on the last axis: ``[..., F_in] -> [..., features[-1]]``.

    Layer ``i`` is ``Dense -> [BatchNorm] -> activation``; the last layer is activated (and
    normalised) only if ``activate_final``. Leading axes are batch axes of any number (e.g.
    ``[K, B, D]`` for K latent samples), so one matmul of ``K*B`` rows serves all of them: they are
    flattened to one axis before the first layer and restored after the last. (With two or more
    leading axes, the weight gradient of a ``Dense`` contracts over several axes and XLA:CPU copies
    the incoming gradient into a transposed layout before the product; with one, it does not.)

    Attributes:
      features: output width of each layer, e.g. ``(500, 500, 784)``; must be non-empty.
      activation: a name from ``ACTIVATIONS`` or a callable.
      activate_final: apply the activation (and batch normalisation) after the last layer too.
      batch_norm: batch-normalise every activated layer (its ``Dense`` then has no bias); the
        statistics live in the ``batch_stats`` collection and ``train`` selects batch statistics
        (and their update) or the running averages.
      bn_momentum: momentum of the running averages.
      kernel_init: initialiser of every ``Dense`` kernel (Flax's default: LeCun normal).
    """

    features: Sequence[int]
    activation: Activation = "tanh"
    activate_final: bool = False
    batch_norm: bool = False
    bn_momentum: float = 0.99
    kernel_init: Callable = nn.linear.default_kernel_init

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if len(self.features) == 0:
            raise ValueError("`features` must list at least one layer width; got ().")
        if any(int(f) <= 0 for f in self.features):
            raise ValueError(f"`features` must be positive widths; got {tuple(self.features)}.")
        if x.ndim < 1:
            raise ValueError(f"`x` must have at least 1 dimension (features last); got shape {x.shape}.")
        act = get_activation(self.activation)
        n = len(self.features)
        lead = x.shape[:-1]
        if x.ndim > 2:
            x = x.reshape((-1, x.shape[-1]))
        for i, width in enumerate(self.features):
            activated = i < n - 1 or self.activate_final
            norm = self.batch_norm and activated
            x = nn.Dense(int(width), use_bias=not norm, kernel_init=self.kernel_init, name=f"dense_{i}")(x)
            if norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, name=f"bn_{i}")(x)
            if activated:
                x = act(x)
        return x.reshape(lead + x.shape[-1:]) if len(lead) > 1 else x
