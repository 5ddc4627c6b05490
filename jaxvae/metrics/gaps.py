r"""The three gaps of Xiao et al. (generalization, amortization, robustness), for any Gaussian-encoder VAE.

Protocol: the gaps take callables with the parameters closed over, never a model:

* ``encode(x [B, ...]) -> (loc [B, D], scale [B, D])``: the Gaussian posterior ``q(z|x)``
  (diagonal, ``scale > 0``). It must treat examples independently (no batch statistics: call
  BatchNorm in inference mode), since gradients and per-example results rely on it.
* ``log_likelihood(x [B, ...], z [B, D]) -> [B]``: the event-summed ``log p(x|z)`` of the (frozen)
  decoder.
* ``decode(z [B, D]) -> [B, ...]``: the decoder's reconstruction ``g(z)`` in the data range (the
  Bernoulli means for binary data); only the robustness gap needs it.
* ``log_prior(z [B, D]) -> [B]``, optional: the prior; by default ``p(z) = N(0, I)`` (the paper's)
  and the KL term is the closed form. With ``log_prior`` the KL is estimated by the same samples.

ELBO estimator (shared by all gaps): ``S`` reparameterised samples ``z_s = loc + scale * eps_s``::

    ELBO(x) ~= (1/S) sum_s log p(x | z_s) - KL(q(z|x) || N(0, I))

unbiased for the ELBO at any ``S`` (``S`` only lowers the variance, which the standard errors include).

**Generalization gap** (eq. 3), :func:`generalization_gap`:
``G_g = E_{x ~ D_train} ELBO(x) - E_{x ~ D_test} ELBO(x)``, with one estimator and one sample count
``S`` for both sets, and its standard error (the two sets are independent).

**Amortization gap** (eq. 4, Cremer et al. 2018), :func:`amortization_gap`:
``G_a = E_{x ~ D_test}[ELBO*(x) - ELBO(x)]``: the variational parameters ``(loc, log scale)`` of
each example are optimised with the decoder frozen, starting at the encoder's output; one optax
optimiser state per example, the update ``vmap``-ed over examples (no coupling between them).
Defaults: Adam, learning rate ``3e-2`` with a cosine decay to 0 over ``num_steps = 500`` steps,
``8`` samples per gradient (4000 decoder passes per example); the decay lets the noisy iterates
settle. On the linear-Gaussian test model, from a poor start (means off by 0.8, scales 2.5x), this
reaches the optimal ELBO to within 0.003 nats, where Adam at ``1e-2`` for 400 steps stays 0.15 nats
short with scales 20 % too large: check the trajectory on a real model before trusting a ``G_a``.
The ELBO of the iterates is recorded every ``record_every`` steps with **one fixed set of**
``eval_samples`` draws per example (common random numbers), so the trajectory shows convergence
without sampling noise between records and ``ELBO*(x) - ELBO(x)`` is the difference of two
estimates with the same draws.

**Robustness gap** (eq. 5), :func:`robustness_gap`: for each real image ``x_r`` and each of ``n_a``
seeds, the SKL attack (:func:`skl_attack`; App. A, eq. 10, Kuzina et al. 2022) finds
``x_a = x_r + eps``, ``||eps||_inf <= delta``, maximising the symmetric KL
``SKL = (KL(q(.|x_a) || q(.|x_r)) + KL(q(.|x_r) || q(.|x_a))) / 2`` by projected gradient ascent;
then ``G_r = mean[MS-SSIM(x_r, x_a) - MS-SSIM(x~_r, x~_a)]`` with reconstructions
``x~ = decode(z)``, ``z ~ q(z|.)``. Attack details (Kuzina et al.'s code): the seed draws the
start ``eps_0 ~ U[-delta, delta]`` (the SKL is flat at ``eps = 0``: its gradient vanishes there);
each of ``n_eps`` steps adds ``eta * clip(grad, -delta, delta)`` (``update="clipped"``; or
``eta * sign(grad)``, ``update="sign"``), projects ``eps`` onto the ball and clips ``x_r + eps``
to the data range. Table 2 (BinaryMNIST): ``n_r = 50``, ``n_a = 10``, ``n_eps = 50``,
``eta = 1``, ``delta = 0.1``. MS-SSIM is :func:`jaxvae.metrics.ssim.ms_ssim` with its small-image
convention (2 scales at 28-32 px).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxvae.config import check_in_range, check_one_of, check_positive, check_positive_int
from jaxvae.data.loader import epoch_batches
from jaxvae.distributions.normal import Normal, kl_normal_normal, normal_log_prob
from jaxvae.metrics.ssim import ms_ssim
from jaxvae.typing import PRNGKey

__all__ = [
    "AmortizationGap",
    "AttackResult",
    "GeneralizationGap",
    "RobustnessGap",
    "amortization_gap",
    "elbo_estimate",
    "generalization_gap",
    "robustness_gap",
    "skl_attack",
    "symmetric_kl",
]

EncodeFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
LogLikelihoodFn = Callable[[jax.Array, jax.Array], jax.Array]
DecodeFn = Callable[[jax.Array], jax.Array]
LogPriorFn = Callable[[jax.Array], jax.Array]

UPDATES = ("clipped", "sign")


# ----------------------------------------------------------------------------- the ELBO estimator


def _check_q(loc: Any, scale: Any, batch: int) -> tuple[jax.Array, jax.Array]:
    loc, scale = jnp.asarray(loc), jnp.asarray(scale)
    if loc.ndim != 2 or loc.shape[0] != batch or scale.shape != loc.shape:
        raise ValueError(
            f"`encode(x)` must return (loc, scale) of equal shapes [B, D] with B = {batch}; "
            f"got {loc.shape} and {scale.shape}."
        )
    return loc, scale


def elbo_estimate(
    key: PRNGKey,
    x: ArrayLike,
    loc: ArrayLike,
    scale: ArrayLike,
    log_likelihood: LogLikelihoodFn,
    *,
    num_samples: int = 1,
    log_prior: LogPriorFn | None = None,
) -> jax.Array:
    """Per-example ELBO ``[B]`` of ``q = N(loc, scale^2)`` with ``num_samples`` reparameterised draws.

    The draws of example ``b`` are ``eps [S, D]`` from ``key`` (one normal array ``[S, B, D]``);
    ``log_likelihood`` is called once on the ``S * B`` stacked pairs (``x`` repeated ``S`` times).
    KL: closed form against ``N(0, I)``, or ``log q - log_prior`` at the same draws if ``log_prior``.
    """
    x = jnp.asarray(x)
    loc, scale = _check_q(loc, scale, x.shape[0])
    s = check_positive_int("num_samples", num_samples)
    b, d = loc.shape
    eps = jax.random.normal(key, (s, b, d), loc.dtype)
    z = loc[None] + scale[None] * eps  # [S, B, D]
    xs = jnp.broadcast_to(x[None], (s,) + x.shape).reshape((s * b,) + x.shape[1:])
    ll = jnp.asarray(log_likelihood(xs, z.reshape(s * b, d)))
    if ll.shape != (s * b,):
        raise ValueError(f"`log_likelihood(x, z)` must return the event-summed [B] = ({s * b},); got {ll.shape}.")
    rec = jnp.mean(ll.reshape(s, b), axis=0)
    if log_prior is None:
        kl = jnp.sum(_kl_std(loc, scale), axis=-1)
    else:
        lp = jnp.asarray(log_prior(z.reshape(s * b, d)))
        if lp.shape != (s * b,):
            raise ValueError(f"`log_prior(z)` must return [B] = ({s * b},); got {lp.shape}.")
        lq = jnp.sum(normal_log_prob(z, loc[None], scale[None]), axis=-1)  # [S, B]
        kl = jnp.mean(lq - lp.reshape(s, b), axis=0)
    return rec - kl


def _kl_std(loc: jax.Array, scale: jax.Array) -> jax.Array:
    """Elementwise ``KL(N(loc, scale^2) || N(0, 1))``."""
    return kl_normal_normal(Normal(loc, scale), Normal(jnp.zeros_like(loc), jnp.ones_like(scale)))


# ----------------------------------------------------------------------------- generalization gap


class GeneralizationGap(NamedTuple):
    """``gap = train_elbo - test_elbo`` (eq. 3) with standard errors (nats per example)."""

    gap: float
    gap_se: float
    train_elbo: float
    train_se: float
    test_elbo: float
    test_se: float


def _elbo_over(key, encode, log_likelihood, x, num_samples, batch_size, log_prior) -> np.ndarray:
    @jax.jit
    def batch_elbo(k, xb):
        loc, scale = encode(xb)
        return elbo_estimate(k, xb, loc, scale, log_likelihood, num_samples=num_samples, log_prior=log_prior)

    out = []
    for i, (batch, mask) in enumerate(epoch_batches({"x": np.asarray(x)}, min(batch_size, len(x)))):
        out.append(np.asarray(batch_elbo(jax.random.fold_in(key, i), batch["x"]))[mask])
    return np.concatenate(out)


def _mean_se(v: np.ndarray) -> tuple[float, float]:
    v = np.asarray(v, np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def generalization_gap(
    key: PRNGKey,
    encode: EncodeFn,
    log_likelihood: LogLikelihoodFn,
    x_train: ArrayLike,
    x_test: ArrayLike,
    *,
    num_samples: int = 10,
    batch_size: int = 500,
    log_prior: LogPriorFn | None = None,
) -> GeneralizationGap:
    """``G_g = E_train[ELBO] - E_test[ELBO]`` (eq. 3), the same estimator and ``num_samples`` on both sets.

    Args:
      key: PRNG key (train and test use ``fold_in(key, 0)`` and ``fold_in(key, 1)``).
      encode, log_likelihood, log_prior: the protocol of the module docstring.
      x_train, x_test: ``[N_train, ...]`` and ``[N_test, ...]`` NumPy arrays (evaluated in padded batches).
      num_samples: ``S``, draws per example of the ELBO estimator.
      batch_size: examples per compiled call.
    """
    check_positive_int("num_samples", num_samples)
    check_positive_int("batch_size", batch_size)
    tr = _elbo_over(jax.random.fold_in(key, 0), encode, log_likelihood, x_train, num_samples, batch_size, log_prior)
    te = _elbo_over(jax.random.fold_in(key, 1), encode, log_likelihood, x_test, num_samples, batch_size, log_prior)
    (m_tr, se_tr), (m_te, se_te) = _mean_se(tr), _mean_se(te)
    return GeneralizationGap(m_tr - m_te, float(np.hypot(se_tr, se_te)), m_tr, se_tr, m_te, se_te)


# ----------------------------------------------------------------------------- amortization gap


class AmortizationGap(NamedTuple):
    """Per-example results of :func:`amortization_gap` (``N`` examples, ``R`` records).

    Attributes:
      gap: ``[N]`` ``elbo_optimized - elbo_amortized``; its mean is ``G_a``.
      elbo_amortized: ``[N]`` ELBO of the encoder's ``q`` (record 0).
      elbo_optimized: ``[N]`` ELBO* after the last step (record ``R - 1``).
      trajectory: ``[R, N]`` ELBO of the iterates at ``steps`` (same draws at every record).
      steps: ``[R]`` optimisation steps of the records (0 = the encoder's output).
      loc, scale: ``[N, D]`` the optimised variational parameters.
    """

    gap: np.ndarray
    elbo_amortized: np.ndarray
    elbo_optimized: np.ndarray
    trajectory: np.ndarray
    steps: np.ndarray
    loc: np.ndarray
    scale: np.ndarray


def amortization_gap(
    key: PRNGKey,
    encode: EncodeFn,
    log_likelihood: LogLikelihoodFn,
    x: ArrayLike,
    *,
    num_steps: int = 500,
    learning_rate: float = 3e-2,
    optimizer: optax.GradientTransformation | None = None,
    num_samples: int = 8,
    eval_samples: int = 100,
    record_every: int = 50,
    batch_size: int = 500,
    log_prior: LogPriorFn | None = None,
) -> AmortizationGap:
    """Per-datapoint optimisation of ``q``'s ``(loc, log scale)`` with the decoder frozen (eq. 4).

    Args:
      key: PRNG key; example ``i`` (its index in ``x``) uses ``fold_in(key, i)``, split into the
        optimisation draws and the record draws, so its result does not depend on ``batch_size``.
      encode, log_likelihood, log_prior: the protocol of the module docstring.
      x: ``[N, ...]`` examples (the test set or a subset of it).
      num_steps: optimisation steps per example.
      learning_rate: peak learning rate of the default optimiser (ignored with ``optimizer``).
      optimizer: any optax transformation, applied per example (default: Adam with a cosine decay).
      num_samples: draws per gradient estimate.
      eval_samples: draws per ELBO record (fixed per example across records).
      record_every: steps between records (the last step is always recorded).
      batch_size: examples optimised together in one compiled call.

    Returns:
      :class:`AmortizationGap` (NumPy arrays).
    """
    num_steps = check_positive_int("num_steps", num_steps)
    check_positive("learning_rate", learning_rate)
    num_samples = check_positive_int("num_samples", num_samples)
    eval_samples = check_positive_int("eval_samples", eval_samples)
    record_every = check_positive_int("record_every", record_every)
    batch_size = check_positive_int("batch_size", batch_size)
    if optimizer is None:
        optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps))
    steps = np.unique(np.append(np.arange(0, num_steps + 1, record_every), num_steps))

    def one_elbo(k, xi, params, s):  # one example: xi [...], params (loc [D], log_scale [D]) -> scalar
        loc, log_scale = params
        return elbo_estimate(
            k, xi[None], loc[None], jnp.exp(log_scale)[None], log_likelihood, num_samples=s, log_prior=log_prior
        )[0]

    def one_example(k, xi, loc0, scale0):
        k_opt, k_eval = jax.random.split(k)
        params = (loc0, jnp.log(scale0))
        state = optimizer.init(params)
        grad = jax.grad(lambda p, kk: -one_elbo(kk, xi, p, num_samples))

        def step(carry, t):
            p, st = carry
            upd, st = optimizer.update(grad(p, jax.random.fold_in(k_opt, t)), st, p)
            return (optax.apply_updates(p, upd), st), None

        def segment(carry, bounds):  # run steps [lo, hi) then record
            lo, hi = bounds
            carry = jax.lax.fori_loop(lo, hi, lambda t, c: step(c, t)[0], carry)
            return carry, one_elbo(k_eval, xi, carry[0], eval_samples)

        first = one_elbo(k_eval, xi, params, eval_samples)
        (params, _), recs = jax.lax.scan(segment, (params, state), (jnp.asarray(steps[:-1]), jnp.asarray(steps[1:])))
        return jnp.concatenate([first[None], recs]), params[0], jnp.exp(params[1])

    @jax.jit
    def run(xb, idx):
        loc, scale = encode(xb)
        loc, scale = _check_q(loc, scale, xb.shape[0])
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, idx)
        return jax.vmap(one_example)(keys, xb, loc, scale)

    traj, locs, scales = [], [], []
    x = np.asarray(x)
    arrays = {"x": x, "index": np.arange(len(x))}
    for batch, mask in epoch_batches(arrays, min(batch_size, len(x))):
        t, lo, sc = run(batch["x"], batch["index"])
        traj.append(np.asarray(t)[mask])
        locs.append(np.asarray(lo)[mask])
        scales.append(np.asarray(sc)[mask])
    trajectory = np.concatenate(traj).T  # [R, N]
    return AmortizationGap(
        gap=trajectory[-1] - trajectory[0],
        elbo_amortized=trajectory[0],
        elbo_optimized=trajectory[-1],
        trajectory=trajectory,
        steps=steps,
        loc=np.concatenate(locs),
        scale=np.concatenate(scales),
    )


# ----------------------------------------------------------------------------- robustness gap


def symmetric_kl(loc_a: ArrayLike, scale_a: ArrayLike, loc_b: ArrayLike, scale_b: ArrayLike) -> jax.Array:
    r"""``(KL(a || b) + KL(b || a)) / 2`` of diagonal Gaussians, summed over the last axis: ``[B, D] -> [B]``.

    Closed form per dimension: ``(r + 1/r) / 4 + (mu_a - mu_b)^2 (1/s_a^2 + 1/s_b^2) / 4 - 1/2``,
    ``r = s_a^2 / s_b^2``.
    """
    qa, qb = Normal(jnp.asarray(loc_a), jnp.asarray(scale_a)), Normal(jnp.asarray(loc_b), jnp.asarray(scale_b))
    return 0.5 * jnp.sum(kl_normal_normal(qa, qb) + kl_normal_normal(qb, qa), axis=-1)


class AttackResult(NamedTuple):
    """``x_adv [B, ...]`` the attacked inputs; ``skl [n_eps + 1, B]`` the SKL after each step (row 0: the start)."""

    x_adv: jax.Array
    skl: jax.Array


def skl_attack(
    key: PRNGKey,
    encode: EncodeFn,
    x: ArrayLike,
    *,
    radius: float = 0.1,
    num_steps: int = 50,
    step_size: float = 1.0,
    update: str = "clipped",
    data_range: tuple[float, float] = (0.0, 1.0),
) -> AttackResult:
    """Maximise ``SKL[q(.|x + eps) || q(.|x)]`` over ``||eps||_inf <= radius`` by projected gradient ascent.

    Start ``eps_0 ~ U[-radius, radius]`` from ``key``; each step
    ``eps <- eps + step_size * clip(g, -radius, radius)`` (``update="clipped"``) or
    ``eps + step_size * sign(g)`` (``"sign"``), then ``eps <- clip(eps, -radius, radius)`` and
    ``eps <- clip(x + eps, lo, hi) - x``. Jit-able (``num_steps`` and ``update`` static).

    Args:
      key: PRNG key of the random start (one attack per key: the paper's "random seeds").
      encode: ``x -> (loc, scale)``, per-example independent.
      x: ``[B, ...]`` real inputs in ``data_range``.
      radius: ``delta``, the L-infinity radius.
      num_steps: ``n_eps``.
      step_size: ``eta``.
      update: ``"clipped"`` or ``"sign"``.
      data_range: ``(lo, hi)`` the valid input range.
    """
    radius = check_positive("radius", radius)
    num_steps = check_positive_int("num_steps", num_steps)
    step_size = check_positive("step_size", step_size)
    check_one_of("update", update, UPDATES)
    lo, hi = (float(v) for v in data_range)
    check_in_range("data_range[1]", hi, lo, float("inf"), low_closed=False)
    x = jnp.asarray(x)
    loc_r, scale_r = _check_q(*encode(x), x.shape[0])
    loc_r, scale_r = jax.lax.stop_gradient(loc_r), jax.lax.stop_gradient(scale_r)

    def project(eps):
        eps = jnp.clip(eps, -radius, radius)
        return jnp.clip(x + eps, lo, hi) - x

    def skl(eps):  # [B]
        loc_a, scale_a = encode(x + eps)
        return symmetric_kl(loc_a, scale_a, loc_r, scale_r)

    def body(eps, _):
        g = jax.grad(lambda e: jnp.sum(skl(e)))(eps)
        g = jnp.clip(g, -radius, radius) if update == "clipped" else jnp.sign(g)
        eps = project(eps + step_size * g)
        return eps, skl(eps)

    eps0 = project(jax.random.uniform(key, x.shape, x.dtype, -radius, radius))
    eps, trace = jax.lax.scan(body, eps0, None, length=num_steps)
    return AttackResult(x + eps, jnp.concatenate([skl(eps0)[None], trace]))


class RobustnessGap(NamedTuple):
    """Results of :func:`robustness_gap` (``n_r`` real images x ``n_a`` attacks).

    Attributes:
      gap: ``G_r``, the mean of ``per_pair``.
      per_pair: ``[n_r, n_a]`` ``ms_ssim_inputs - ms_ssim_recons``.
      ms_ssim_inputs: ``[n_r, n_a]`` MS-SSIM(x_r, x_a).
      ms_ssim_recons: ``[n_r, n_a]`` MS-SSIM(x~_r, x~_a).
      skl: ``[n_r, n_a]`` the SKL each attack reached.
      x_adv: ``[n_a, n_r, ...]`` the attacked inputs.
    """

    gap: float
    per_pair: np.ndarray
    ms_ssim_inputs: np.ndarray
    ms_ssim_recons: np.ndarray
    skl: np.ndarray
    x_adv: np.ndarray


def robustness_gap(
    key: PRNGKey,
    encode: EncodeFn,
    decode: DecodeFn,
    x: ArrayLike,
    *,
    num_seeds: int = 10,
    radius: float = 0.1,
    num_steps: int = 50,
    step_size: float = 1.0,
    update: str = "clipped",
    data_range: tuple[float, float] = (0.0, 1.0),
    image_shape: tuple[int, ...] | None = None,
) -> RobustnessGap:
    """``G_r = E_{x_r} E_{x_a}[MS-SSIM(x_r, x_a) - MS-SSIM(x~_r, x~_a)]`` (eq. 5) with the SKL attack.

    Args:
      key: PRNG key; seed ``a`` attacks with ``fold_in(key, a)`` and draws the reconstructions'
        latents from ``fold_in(key, num_seeds + a)``.
      encode, decode: the protocol of the module docstring (``decode`` returns the data range).
      x: ``[n_r, ...]`` real images (BinaryMNIST: 50 test images).
      num_seeds: ``n_a``, attacks per image.
      radius, num_steps, step_size, update, data_range: as in :func:`skl_attack` (Table 2 defaults).
      image_shape: ``(H, W, C)`` to view one example as an image for MS-SSIM; default ``x.shape[1:]``
        (plus a channel axis for ``[n_r, H, W]``). Needed for flat inputs.
    """
    num_seeds = check_positive_int("num_seeds", num_seeds)
    x = jnp.asarray(x)
    if image_shape is None:
        if x.ndim not in (3, 4):
            raise ValueError(f"`image_shape` is needed for inputs of shape {x.shape} (expected [n_r, H, W(, C)]).")
        image_shape = x.shape[1:] + ((1,) if x.ndim == 3 else ())
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3 or int(np.prod(image_shape)) != int(np.prod(x.shape[1:])):
        raise ValueError(f"`image_shape` must be (H, W, C) with {int(np.prod(x.shape[1:]))} values; got {image_shape}.")
    max_val = float(data_range[1]) - float(data_range[0])

    def as_img(v):
        return jnp.reshape(v, (v.shape[0],) + image_shape)

    @jax.jit
    def one_seed(a):
        res = skl_attack(
            jax.random.fold_in(key, a),
            encode,
            x,
            radius=radius,
            num_steps=num_steps,
            step_size=step_size,
            update=update,
            data_range=data_range,
        )
        k_r, k_a = jax.random.split(jax.random.fold_in(key, num_seeds + a))
        loc_r, scale_r = encode(x)
        loc_a, scale_a = encode(res.x_adv)
        rec_r = decode(loc_r + scale_r * jax.random.normal(k_r, loc_r.shape, loc_r.dtype))
        rec_a = decode(loc_a + scale_a * jax.random.normal(k_a, loc_a.shape, loc_a.dtype))
        ms_in = ms_ssim(as_img(x), as_img(res.x_adv), max_val=max_val)
        ms_rec = ms_ssim(as_img(rec_r), as_img(rec_a), max_val=max_val)
        return ms_in, ms_rec, res.skl[-1], res.x_adv

    outs = [one_seed(a) for a in range(num_seeds)]
    ms_in = np.stack([np.asarray(o[0]) for o in outs], axis=1)
    ms_rec = np.stack([np.asarray(o[1]) for o in outs], axis=1)
    per_pair = ms_in - ms_rec
    return RobustnessGap(
        gap=float(per_pair.mean()),
        per_pair=per_pair,
        ms_ssim_inputs=ms_in,
        ms_ssim_recons=ms_rec,
        skl=np.stack([np.asarray(o[2]) for o in outs], axis=1),
        x_adv=np.stack([np.asarray(o[3]) for o in outs]),
    )
