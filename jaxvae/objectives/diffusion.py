r"""EDM diffusion (Karras et al., 2022): preconditioning, training loss, noise schedule and Heun sampler.

Everything here is a pure function of arrays and callables (this layer imports no network code):

* a **raw network** is ``net(x_in [B, ...], c_noise [B]) -> F [B, ...]`` (e.g. a
  :class:`jaxvae.nets.UNet` bound to its parameters);
* a **denoiser** is ``denoiser(x [B, ...], sigma [B]) -> D [B, ...]``, an estimate of
  :math:`E[y \mid x = y + \sigma n]`. :func:`edm_denoiser` builds one from a raw network.

Preconditioning (EDM Table 1, "Ours")::

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))
    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out  = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in   = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = log(sigma) / 4

Training (EDM eq. 2 and Table 1)::

    ln sigma ~ N(P_mean, P_std^2)            P_mean = -1.2, P_std = 1.2
    loss(y) = lambda(sigma) || D(y + sigma n; sigma) - y ||^2,   n ~ N(0, I)
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2

Since ``lambda c_out^2 = 1``, the loss equals ``|| F - (y - c_skip (y + sigma n)) / c_out ||^2``: the
network regresses a target of unit variance at every noise level (the point of the weighting). The
squared error is **summed** over the event axes, giving one value per example (``[B]``); EDM's own
training code sums over pixels as well and divides by the batch size.

Sampling (EDM Algorithm 1 with ``S_churn = 0``: deterministic, second order)::

    t_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,  i < N;  t_N = 0
    x_0 = t_0 eps,  eps ~ N(0, I)
    d_i = (x_i - D(x_i; t_i)) / t_i,  x' = x_i + (t_{i+1} - t_i) d_i                  (Euler)
    x_{i+1} = x_i + (t_{i+1} - t_i) (d_i + d') / 2,  d' = (x' - D(x'; t_{i+1})) / t_{i+1}   (if t_{i+1} > 0)

with ``N = 18``, ``sigma_min = 0.002``, ``sigma_max = 80``, ``rho = 7`` by default; the last step
(to ``t_N = 0``) is the plain Euler step, so one sample costs ``2N - 1`` denoiser evaluations.

Discretisation error: even with the exact denoiser the 18-step sampler is not exact. For Gaussian
data ``N(m, s^2)`` the exact denoiser is affine, ``D(x; sigma) = m + s^2 / (s^2 + sigma^2) (x - m)``,
so the whole sampler is an affine map ``x_0 -> a x_0 + b`` whose gain ``a sigma_max`` exceeds ``s``
by a few per cent at ``N = 18`` and converges as ``O(1/N^2)`` (the tests check both).

Data scaling: ``sigma_data = 0.5`` is EDM's value for images scaled to ``[-1, 1]``; map MNIST's
``[0, 1]`` to ``[-1, 1]`` (``2 x - 1``) before training and back after sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.config import check_finite_number, check_positive, check_positive_int
from jaxvae.distributions import _checks
from jaxvae.typing import PRNGKey

RawNet = Callable[[jax.Array, jax.Array], jax.Array]
"""``net(x_in [B, ...], c_noise [B]) -> F [B, ...]``: the network before preconditioning."""

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]
"""``denoiser(x [B, ...], sigma [B]) -> D [B, ...]``: the denoised estimate of the clean data."""

SIGMA_DATA = 0.5
P_MEAN = -1.2
P_STD = 1.2
NUM_STEPS = 18
SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
RHO = 7.0

__all__ = [
    "P_MEAN",
    "P_STD",
    "RHO",
    "SIGMA_DATA",
    "SIGMA_MAX",
    "SIGMA_MIN",
    "NUM_STEPS",
    "Denoiser",
    "RawNet",
    "denoising_loss",
    "edm_denoiser",
    "edm_loss",
    "edm_loss_weight",
    "edm_precond",
    "edm_sample",
    "edm_sigma_steps",
    "heun_sample",
    "sample_sigma",
]


def _per_example(v: jax.Array, x: jax.Array) -> jax.Array:
    """``[B]`` -> ``[B, 1, ..., 1]`` broadcastable against ``x [B, ...]`` (explicit: rank promotion may raise)."""
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def _check_batch(name: str, x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 1 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"`{name}` must be a float array [B, ...] with a leading batch axis; got {x.dtype} {x.shape}.")
    return x


def _check_sigma(sigma: Any, batch: int, *, allow_zero: bool = False) -> jax.Array:
    sigma = jnp.asarray(sigma)
    if sigma.shape != (batch,):
        raise ValueError(f"`sigma` must have shape [B] = ({batch},); got {sigma.shape}.")
    if allow_zero:
        _checks.check_finite("sigma", sigma)
    else:
        _checks.check_positive("sigma", sigma)
    return sigma


def edm_precond(sigma: ArrayLike, sigma_data: float = SIGMA_DATA) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    r"""EDM's preconditioning coefficients ``(c_skip, c_out, c_in, c_noise)``, each of ``sigma``'s shape.

    .. math::
        c_\mathrm{skip} = \frac{\sigma_d^2}{\sigma^2 + \sigma_d^2},\quad
        c_\mathrm{out} = \frac{\sigma\,\sigma_d}{\sqrt{\sigma^2 + \sigma_d^2}},\quad
        c_\mathrm{in} = \frac{1}{\sqrt{\sigma^2 + \sigma_d^2}},\quad
        c_\mathrm{noise} = \tfrac14 \ln\sigma.

    Args:
      sigma: noise levels, any shape, > 0.
      sigma_data: standard deviation of the data (0.5 for images in [-1, 1]).

    Raises:
      ValueError: if ``sigma_data`` is not a positive number or a concrete ``sigma`` is not positive.
    """
    sigma_data = check_positive("sigma_data", sigma_data)
    sigma = jnp.asarray(sigma)
    _checks.check_positive("sigma", sigma)
    total = jnp.square(sigma) + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data * jax.lax.rsqrt(total)
    c_in = jax.lax.rsqrt(total)
    c_noise = 0.25 * jnp.log(sigma)
    return c_skip, c_out, c_in, c_noise


def edm_loss_weight(sigma: ArrayLike, sigma_data: float = SIGMA_DATA) -> jax.Array:
    r"""EDM's loss weight :math:`\lambda(\sigma) = (\sigma^2 + \sigma_d^2) / (\sigma \sigma_d)^2`.

    It equals :math:`1 / c_\mathrm{out}^2`, so the weighted loss regresses a unit-variance target.
    """
    sigma_data = check_positive("sigma_data", sigma_data)
    sigma = jnp.asarray(sigma)
    _checks.check_positive("sigma", sigma)
    return (jnp.square(sigma) + sigma_data**2) / jnp.square(sigma * sigma_data)


def edm_denoiser(net: RawNet, sigma_data: float = SIGMA_DATA) -> Denoiser:
    """The preconditioned denoiser ``D(x; sigma) = c_skip x + c_out net(c_in x, c_noise)`` of a raw network.

    Args:
      net: ``net(x_in [B, ...], c_noise [B]) -> F [B, ...]``.
      sigma_data: data standard deviation of the preconditioning.

    Returns:
      ``denoiser(x [B, ...], sigma [B]) -> [B, ...]``.
    """
    if not callable(net):
        raise ValueError(f"`net` must be callable net(x_in, c_noise); got {net!r}.")
    sigma_data = check_positive("sigma_data", sigma_data)

    def denoiser(x: jax.Array, sigma: jax.Array) -> jax.Array:
        x = _check_batch("x", x)
        sigma = _check_sigma(sigma, x.shape[0])
        c_skip, c_out, c_in, c_noise = edm_precond(sigma.astype(x.dtype), sigma_data)
        f = net(_per_example(c_in, x) * x, c_noise)
        if jnp.shape(f) != x.shape:
            raise ValueError(f"`net(x_in, c_noise)` must return the shape of `x` {x.shape}; got {jnp.shape(f)}.")
        return _per_example(c_skip, x) * x + _per_example(c_out, x) * f

    return denoiser


def sample_sigma(
    key: PRNGKey, shape: int | tuple[int, ...], p_mean: float = P_MEAN, p_std: float = P_STD, dtype=jnp.float32
) -> jax.Array:
    r"""Training noise levels :math:`\ln\sigma \sim N(P_\mathrm{mean}, P_\mathrm{std}^2)` (EDM's log-normal).

    Args:
      key: PRNG key.
      shape: output shape, usually ``(B,)``.
      p_mean: mean of ``ln sigma``.
      p_std: standard deviation of ``ln sigma``, > 0.
    """
    p_mean = check_finite_number("p_mean", p_mean)
    p_std = check_positive("p_std", p_std)
    shape = _checks.as_shape(shape)
    return jnp.exp(p_mean + p_std * jax.random.normal(key, shape, dtype=dtype))


def denoising_loss(
    key: PRNGKey, net: RawNet, y: ArrayLike, sigma: ArrayLike, *, sigma_data: float = SIGMA_DATA
) -> jax.Array:
    r"""Per-example EDM loss at given noise levels: :math:`\lambda(\sigma)\,\|D(y + \sigma n; \sigma) - y\|^2`.

    Args:
      key: PRNG key of the noise ``n ~ N(0, I)``.
      net: raw network ``net(x_in [B, ...], c_noise [B]) -> [B, ...]`` (preconditioned here).
      y: clean data ``[B, ...]`` (scaled so that its std is about ``sigma_data``).
      sigma: noise levels ``[B]``, > 0.
      sigma_data: data standard deviation of the preconditioning and the weight.

    Returns:
      ``[B]``: the weighted squared error summed over the event axes.
    """
    y = _check_batch("y", y)
    sigma = _check_sigma(sigma, y.shape[0]).astype(y.dtype)
    noise = jax.random.normal(key, y.shape, dtype=y.dtype)
    d = edm_denoiser(net, sigma_data)(y + _per_example(sigma, y) * noise, sigma)
    sq = jnp.sum(jnp.square(d - y).reshape(y.shape[0], -1), axis=1)
    return edm_loss_weight(sigma, sigma_data) * sq


def edm_loss(
    key: PRNGKey,
    net: RawNet,
    y: ArrayLike,
    *,
    sigma_data: float = SIGMA_DATA,
    p_mean: float = P_MEAN,
    p_std: float = P_STD,
) -> jax.Array:
    """Per-example EDM training loss ``[B]``: log-normal ``sigma`` (:func:`sample_sigma`) then :func:`denoising_loss`.

    ``key`` is split in two: one key for the noise levels, one for the noise.
    """
    y = _check_batch("y", y)
    k_sigma, k_noise = jax.random.split(key)
    sigma = sample_sigma(k_sigma, (y.shape[0],), p_mean, p_std, dtype=y.dtype)
    return denoising_loss(k_noise, net, y, sigma, sigma_data=sigma_data)


def edm_sigma_steps(
    num_steps: int = NUM_STEPS,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    dtype=jnp.float32,
) -> jax.Array:
    r"""EDM's time steps ``[t_0, ..., t_{N-1}, 0]`` (``N + 1`` values): ``sigma_max`` to ``sigma_min``, then 0.

    .. math:: t_i = \big(\sigma_\max^{1/\rho} + \tfrac{i}{N-1}(\sigma_\min^{1/\rho} - \sigma_\max^{1/\rho})\big)^\rho

    computed in float64 and cast to ``dtype``. With ``N = 1`` the schedule is ``[sigma_max, 0]`` (one Euler step).

    Raises:
      ValueError: unless ``num_steps >= 1``, ``0 < sigma_min < sigma_max`` and ``rho > 0``.
    """
    n = check_positive_int("num_steps", num_steps)
    sigma_min = check_positive("sigma_min", sigma_min)
    sigma_max = check_positive("sigma_max", sigma_max)
    rho = check_positive("rho", rho)
    if not sigma_min < sigma_max:
        raise ValueError(f"`sigma_min` must be < sigma_max={sigma_max}; got {sigma_min}.")
    frac = np.arange(n, dtype=np.float64) / max(n - 1, 1)
    t = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return jnp.asarray(np.append(t, 0.0), dtype=dtype)


def _check_sigmas(sigmas: Any) -> jax.Array:
    sigmas = jnp.asarray(sigmas)
    if sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ValueError(f"`sigmas` must be a 1-D schedule [t_0, ..., t_N] with N >= 1; got shape {sigmas.shape}.")
    if _checks.is_concrete(sigmas):
        s = np.asarray(sigmas)
        if not (np.all(np.isfinite(s)) and np.all(s[:-1] > 0) and s[-1] == 0 and np.all(np.diff(s) < 0)):
            raise ValueError(f"`sigmas` must decrease strictly from t_0 > 0 to t_N = 0 (edm_sigma_steps); got {s}.")
    return sigmas


def heun_sample(denoiser: Denoiser, x_init: ArrayLike, sigmas: ArrayLike) -> jax.Array:
    """Integrate the probability-flow ODE from ``x_init`` (at noise ``t_0``) to ``t_N = 0``: EDM Algorithm 1.

    Heun (second-order) steps ``t_i -> t_{i+1}`` for ``i < N - 1`` (a ``lax.scan``), then one Euler
    step to ``t_N = 0``. Deterministic: the output is a fixed function of ``x_init``.

    Args:
      denoiser: ``D(x [B, ...], sigma [B]) -> [B, ...]`` (e.g. :func:`edm_denoiser`).
      x_init: ``[B, ...]`` starting point, ``t_0 * eps`` with ``eps ~ N(0, I)`` for sampling.
      sigmas: ``[N + 1]`` decreasing schedule ending in 0 (:func:`edm_sigma_steps`).

    Returns:
      ``[B, ...]`` samples, ``x_init``'s shape and dtype.
    """
    if not callable(denoiser):
        raise ValueError(f"`denoiser` must be callable denoiser(x, sigma); got {denoiser!r}.")
    x = _check_batch("x_init", x_init)
    sigmas = _check_sigmas(sigmas).astype(x.dtype)
    batch = x.shape[0]

    def deriv(xc: jax.Array, t: jax.Array) -> jax.Array:
        d = denoiser(xc, jnp.full((batch,), t, x.dtype))
        if jnp.shape(d) != xc.shape:
            raise ValueError(f"`denoiser(x, sigma)` must return the shape of `x` {xc.shape}; got {jnp.shape(d)}.")
        return (xc - d) / t

    def heun_step(xc: jax.Array, ts: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        t_cur, t_next = ts
        d_cur = deriv(xc, t_cur)
        x_euler = xc + (t_next - t_cur) * d_cur
        d_next = deriv(x_euler, t_next)
        return xc + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_next), None

    x, _ = jax.lax.scan(heun_step, x, (sigmas[:-2], sigmas[1:-1]))
    t_last = sigmas[-2]
    return x + (sigmas[-1] - t_last) * deriv(x, t_last)


def edm_sample(
    key: PRNGKey,
    denoiser: Denoiser,
    shape: tuple[int, ...],
    *,
    indices: ArrayLike | None = None,
    num_steps: int = NUM_STEPS,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    dtype=jnp.float32,
) -> jax.Array:
    """Samples ``[B, ...]`` of the deterministic EDM sampler: ``heun_sample(denoiser, t_0 eps, edm_sigma_steps())``.

    The same ``key`` gives bitwise the same samples. With ``indices`` (int ``[B]``) example ``b``'s
    noise is drawn from ``fold_in(key, indices[b])`` alone, so each image has its own seed (as in
    the paper: "unique seed per image") and an image does not depend on which batch it was drawn in.

    Args:
      key: PRNG key.
      denoiser: ``D(x, sigma)``.
      shape: ``(B, ...)``, the output shape.
      indices: optional global image indices ``[B]``.
      num_steps, sigma_min, sigma_max, rho: the schedule (:func:`edm_sigma_steps`).
    """
    shape = _checks.as_shape(shape)
    if len(shape) < 1 or shape[0] < 1:
        raise ValueError(f"`shape` must be (B, ...) with B >= 1; got {shape}.")
    sigmas = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho, dtype=dtype)
    if indices is None:
        eps = jax.random.normal(key, shape, dtype=dtype)
    else:
        indices = jnp.asarray(indices)
        if indices.shape != shape[:1] or not jnp.issubdtype(indices.dtype, jnp.integer):
            raise ValueError(f"`indices` must be ints of shape [B] = {shape[:1]}; got {indices.dtype} {indices.shape}.")
        eps = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), shape[1:], dtype=dtype))(indices)
    return heun_sample(denoiser, sigmas[0] * eps, sigmas)
