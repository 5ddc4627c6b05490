r"""Semi-supervised bounds: Kingma et al. (2014) M2 and the inverted ("untapped") bounds of Gemp et al.

Pure functions of per-example log-density terms. Every function returns a ``[B]`` array (one value
per example); the train step averages. Notation (``C`` classes, ``D`` latent dimensions):

- Labeled pairs, eq. 3 of Gemp et al. (= Kingma et al. eq. 6)::

      J_fl(x, y) = E_q(z|x,y)[ log p(x|y,z) + log p(y) + log p(z) - log q(z|x,y) ]
                 = log p(x|y,z) + log p(y) - KL_z          (one sample, or KL_z in closed form)

  -> :func:`labeled_bound`, with ``kl_z`` either the single-sample ``log q(z|x,y) - log p(z)``
  or a closed-form KL.
- Unlabeled x, eq. 4, with a *relaxed* (Concrete) sample ``y ~ q(y|x)`` (Gemp et al.)::

      J_fu(x) = J_fl(x, y) - log q(y|x)                  -> :func:`unlabeled_bound`

  and with exact enumeration over the ``C`` labels (Kingma et al. eq. 7)::

      J_fu(x) = sum_y q(y|x) J_fl(x, y) + H[q(y|x)]      -> :func:`unlabeled_bound_enumerated`
- Unfeatured y (the reverse model, whose recognition model is the forward generative model and
  whose "prior" over images is ``q(x)``), with ``x~ ~ p(x|y,z)``:

      eq. 5  (z sampled, z ~ p(z)):  J_ru(y)    = log q(y|x~) + log q(z|x~,y) - log p(x~|y,z)
                                                   + log q(x~) - log p(z)     -> :func:`reverse_bound`
      eq. 17 (z observed):           J_ru(y, z) = log q(y|x~) + log q(z|x~,y) - log p(x~|y,z)
                                                   + log q(x~)                -> :func:`reverse_bound_z_observed`
- Discriminative terms, eq. 7: ``J_fd = L_y(q(.|x), y)`` (cross-entropy,
  :func:`classification_cross_entropy`) and ``J_rd = L_x(p(.|y,z), x)`` (Euclidean norm,
  :func:`l2_reconstruction_loss`).
- Total, eq. 8, to maximise: ``J = J_f + J_r - a_fd J_fd - a_rd J_rd``; the M2 baseline drops ``J_r``.

The constant log-densities of the uniform priors are given by :func:`log_uniform_categorical`,
:func:`log_uniform_box` and :func:`log_uniform_bernoulli` (the authors' code omits them; they do
not change gradients but make the bounds true bounds).

References:
  Gemp, Parente, Mahadevan, "Inverting VAEs for Improved Generative Accuracy", NIPS 2017 AABI
  workshop (arXiv:1608.05983), eqs. 3-8 and 17. Kingma, Rezende, Mohamed, Welling,
  "Semi-Supervised Learning with Deep Generative Models", NIPS 2014, eqs. 6-9.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks


def _per_example(**named: ArrayLike) -> int:
    """Check that every named term is a ``[B]`` array with the same ``B`` (scalars allowed via ``None``)."""
    size = None
    for name, v in named.items():
        shape = np.shape(v)
        if len(shape) != 1:
            raise ValueError(f"`{name}` must be a per-example array of shape [B]; got shape {shape}.")
        if size is None:
            size = shape[0]
        elif shape[0] != size:
            desc = ", ".join(f"`{k}` {np.shape(x)}" for k, x in named.items())
            raise ValueError(f"per-example terms must share the batch size B; got {desc}.")
        _checks.check_finite(name, v)
    return int(size)


def _scalar(name: str, v: ArrayLike) -> jax.Array:
    if np.ndim(v) != 0:
        raise ValueError(f"`{name}` must be a scalar (a constant log-density); got shape {np.shape(v)}.")
    _checks.check_finite(name, v)
    return jnp.asarray(v)


# ----------------------------------------------------------------------------- constant priors


def log_uniform_categorical(num_classes: int) -> float:
    """``log p(y) = -log C`` of the uniform categorical prior ``Cat(1/C)``."""
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2; got {num_classes!r}.")
    return -math.log(num_classes)


def log_uniform_box(dim: int, low: float, high: float) -> float:
    """``log p(z) = -d log(b - a)`` of the uniform prior ``U[a, b]^d`` (inside the box)."""
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"`dim` must be an int >= 1; got {dim!r}.")
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(f"the box needs finite `low` < `high`; got low={low!r}, high={high!r}.")
    return -dim * math.log(high - low)


def log_uniform_bernoulli(num_pixels: int) -> float:
    """``log q(x) = -D log 2`` of the reverse model's image prior ``q(x) = Bern(0.5)^D``."""
    if not isinstance(num_pixels, (int, np.integer)) or num_pixels < 1:
        raise ValueError(f"`num_pixels` must be an int >= 1; got {num_pixels!r}.")
    return -num_pixels * math.log(2.0)


# ----------------------------------------------------------------------------- forward (M2) bounds


def labeled_bound(log_px_yz: ArrayLike, kl_z: ArrayLike, *, log_py: ArrayLike = 0.0) -> jax.Array:
    r"""Labeled-pair bound :math:`J_{fl}(x, y) = \log p(x|y,z) + \log p(y) - \mathrm{KL}_z` (eq. 3).

    Args:
      log_px_yz: ``[B]`` :math:`\log p_\theta(x|y,z)` at ``z ~ q(z|x,y)`` (summed over pixels).
      kl_z: ``[B]`` either the one-sample estimate :math:`\log q(z|x,y) - \log p(z)` or a
        closed-form :math:`KL(q(z|x,y)\|p(z))`.
      log_py: scalar or ``[B]`` :math:`\log p(y)` (``-log C`` for the uniform prior).

    Returns:
      ``[B]`` lower bound on :math:`\log p(x, y)` (in expectation).

    Raises:
      ValueError: if the terms are not ``[B]`` arrays of one batch size, or hold non-finite values.
    """
    if np.ndim(log_py) == 0:
        _per_example(log_px_yz=log_px_yz, kl_z=kl_z)
        log_py = _scalar("log_py", log_py)
    else:
        _per_example(log_px_yz=log_px_yz, kl_z=kl_z, log_py=log_py)
    return log_px_yz + log_py - kl_z


def unlabeled_bound(
    log_px_yz: ArrayLike, kl_z: ArrayLike, log_qy_x: ArrayLike, *, log_py: ArrayLike = 0.0
) -> jax.Array:
    r"""Unlabeled bound with one relaxed sample :math:`y \sim q(y|x)` (eq. 4).

    .. math:: J_{fu}(x) = \log p(x|y,z) + \log p(y) - \mathrm{KL}_z - \log q(y|x)

    Args:
      log_px_yz: ``[B]`` :math:`\log p(x|y,z)` at the sampled ``y`` and ``z ~ q(z|x,y)``.
      kl_z: ``[B]`` as in :func:`labeled_bound`, at the sampled ``y``.
      log_qy_x: ``[B]`` log-density of the sample under ``q(y|x)`` (Concrete density for a relaxed
        sample, log-mass for a discrete one).
      log_py: scalar or ``[B]`` :math:`\log p(y)` at the sample.

    Returns:
      ``[B]`` single-sample estimate of the bound on :math:`\log p(x)`.
    """
    _per_example(log_qy_x=log_qy_x, log_px_yz=log_px_yz)
    return labeled_bound(log_px_yz, kl_z, log_py=log_py) - log_qy_x


def unlabeled_bound_enumerated(logits_y: ArrayLike, labeled_bounds: ArrayLike) -> jax.Array:
    r"""Unlabeled bound with exact enumeration over the labels (Kingma et al. eq. 7).

    .. math:: J_{fu}(x) = \sum_{c=1}^{C} q(c|x)\, J_{fl}(x, c) + H[q(\cdot|x)]

    Args:
      logits_y: ``[B, C]`` logits of :math:`q(y|x)`.
      labeled_bounds: ``[B, C]`` :math:`J_{fl}(x, c)` for every class ``c``.

    Returns:
      ``[B]``.

    Raises:
      ValueError: if the arrays are not ``[B, C]`` of the same shape or hold non-finite values.
    """
    for name, v in (("logits_y", logits_y), ("labeled_bounds", labeled_bounds)):
        if np.ndim(v) != 2:
            raise ValueError(f"`{name}` must have shape [B, C]; got shape {np.shape(v)}.")
        _checks.check_finite(name, v)
    if np.shape(logits_y) != np.shape(labeled_bounds):
        raise ValueError(
            f"`logits_y` {np.shape(logits_y)} and `labeled_bounds` {np.shape(labeled_bounds)} must have "
            "the same shape [B, C]."
        )
    log_q = jax.nn.log_softmax(logits_y, axis=-1)
    q = jnp.exp(log_q)
    return jnp.sum(q * (labeled_bounds - log_q), axis=-1)


# ----------------------------------------------------------------------------- reverse bounds


def reverse_bound_z_observed(
    log_qy_x: ArrayLike, log_qz_xy: ArrayLike, log_px_yz: ArrayLike, *, log_qx: ArrayLike
) -> jax.Array:
    r"""Reverse bound for unfeatured ``(y, z)`` pairs, z observed (Gemp et al. App. B, eq. 17).

    .. math:: J_{ru}(y, z) = \log q(y|\tilde x) + \log q(z|\tilde x, y) - \log p(\tilde x|y, z)
              + \log q(\tilde x), \qquad \tilde x \sim p(x|y, z)

    a single-sample lower bound on :math:`\log q_\phi(y, z)` of the reverse model.

    Args:
      log_qy_x: ``[B]`` :math:`\log q_\phi(y|\tilde x)` at the unfeatured ``y``.
      log_qz_xy: ``[B]`` :math:`\log q_\phi(z|\tilde x, y)` at the given ``z``.
      log_px_yz: ``[B]`` :math:`\log p_\theta(\tilde x|y,z)` of the sample itself.
      log_qx: scalar or ``[B]`` :math:`\log q(\tilde x)` (``-D log 2`` for ``Bern(0.5)``).

    Returns:
      ``[B]``.
    """
    _per_example(log_qy_x=log_qy_x, log_qz_xy=log_qz_xy, log_px_yz=log_px_yz)
    if np.ndim(log_qx) == 0:
        log_qx = _scalar("log_qx", log_qx)
    else:
        _per_example(log_qy_x=log_qy_x, log_qx=log_qx)
    return log_qy_x + log_qz_xy - log_px_yz + log_qx


def reverse_bound(
    log_qy_x: ArrayLike,
    log_qz_xy: ArrayLike,
    log_px_yz: ArrayLike,
    *,
    log_qx: ArrayLike,
    log_pz: ArrayLike,
) -> jax.Array:
    r"""Reverse bound for unfeatured ``y`` with ``z ~ p(z)`` sampled (Gemp et al. eq. 5).

    .. math:: J_{ru}(y) = \log q(y|\tilde x) + \log q(z|\tilde x, y) - \log p(\tilde x|y,z)
              + \log q(\tilde x) - \log p(z), \qquad z \sim p(z),\ \tilde x \sim p(x|y,z)

    a single-sample lower bound on :math:`\log q_\phi(y)`.

    Args:
      log_qy_x, log_qz_xy, log_px_yz, log_qx: as in :func:`reverse_bound_z_observed`.
      log_pz: scalar or ``[B]`` :math:`\log p(z)` at the sampled ``z``.

    Returns:
      ``[B]``.
    """
    j = reverse_bound_z_observed(log_qy_x, log_qz_xy, log_px_yz, log_qx=log_qx)
    if np.ndim(log_pz) == 0:
        log_pz = _scalar("log_pz", log_pz)
    else:
        _per_example(log_qy_x=log_qy_x, log_pz=log_pz)
    return j - log_pz


# ----------------------------------------------------------------------------- discriminative terms


def classification_cross_entropy(logits_y: ArrayLike, y: ArrayLike) -> jax.Array:
    r"""``J_fd`` term: :math:`-\sum_c y_c \log \mathrm{softmax}(\ell)_c` for target vectors on the simplex.

    For one-hot targets this equals the authors' ``KL(target || pred)`` (their ``loss_y=KL``).

    Args:
      logits_y: ``[B, C]`` logits of :math:`q(y|x)`.
      y: ``[B, C]`` targets (one-hot or any point of the simplex) **or** ``[B]`` integer labels.

    Returns:
      ``[B]``.

    Raises:
      ValueError: on shape mismatch, labels outside ``[0, C)`` or targets off the simplex (eagerly).
    """
    if np.ndim(logits_y) != 2:
        raise ValueError(f"`logits_y` must have shape [B, C]; got shape {np.shape(logits_y)}.")
    b, c = np.shape(logits_y)
    _checks.check_finite("logits_y", logits_y)
    log_q = jax.nn.log_softmax(logits_y, axis=-1)
    if np.ndim(y) == 1:
        if np.shape(y)[0] != b or not jnp.issubdtype(jnp.asarray(y).dtype, jnp.integer):
            raise ValueError(
                f"integer labels `y` must have shape [B] = [{b}]; got {np.shape(y)}, dtype {jnp.asarray(y).dtype}."
            )
        if _checks.is_concrete(y):
            a = np.asarray(y)
            if a.size and (a.min() < 0 or a.max() >= c):
                raise ValueError(f"labels `y` must lie in [0, {c}); got range [{a.min()}, {a.max()}].")
        return -jnp.take_along_axis(log_q, jnp.asarray(y)[:, None], axis=-1)[:, 0]
    if np.shape(y) != (b, c):
        raise ValueError(f"targets `y` must have shape [B, C] = {(b, c)} or [B]; got {np.shape(y)}.")
    _checks.check_probability("y", y)
    return -jnp.sum(y * log_q, axis=-1)


def l2_reconstruction_loss(x: ArrayLike, x_mean: ArrayLike) -> jax.Array:
    r"""``J_rd`` term: the Euclidean norm :math:`\|x - \mathbb{E}_{p(x|y,z)}[x]\|_2` per example.

    The authors' ``L2`` is the norm, not its square (``untapped/M12.py``).

    Args:
      x: ``[B, ...]`` targets.
      x_mean: ``[B, ...]`` decoder means, same shape.

    Returns:
      ``[B]``.
    """
    if np.shape(x) != np.shape(x_mean) or np.ndim(x) < 1:
        raise ValueError(f"`x` {np.shape(x)} and `x_mean` {np.shape(x_mean)} must have the same shape [B, ...].")
    _checks.check_finite("x", x)
    _checks.check_finite("x_mean", x_mean)
    d = jnp.reshape(jnp.asarray(x_mean) - jnp.asarray(x), (np.shape(x)[0], -1))
    # sqrt(sum d^2 + tiny): finite gradient at d = 0 (exact reconstruction).
    return jnp.sqrt(jnp.sum(jnp.square(d), axis=-1) + 1e-12)
