"""Optimizer factory: validation, schedules against their closed forms, clipping, and the update
rules.

References are written out here in NumPy from the formulas (Kingma & Ba 2015, Alg. 1 and 2;
Loshchilov & Hutter 2019 for decoupled weight decay), not taken from optax. Tolerances: float32
arithmetic in the optimizer against float64 references, a few ulp per operation -> rtol 1e-5.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvae.train.optim import OptimizerConfig, make_optimizer, make_schedule

RTOL = 1e-5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "rmsprop"}, "name"),
        ({"schedule": "linear"}, "schedule"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"b1": 1.0}, "b1"),
        ({"b2": -0.1}, "b2"),
        ({"eps": -1e-8}, "eps"),
        ({"eps": 0.0}, "eps"),
        ({"weight_decay": 1e-4}, "adamw"),
        ({"name": "adamw", "weight_decay": -1.0}, "weight_decay"),
        ({"schedule": "cosine", "decay_steps": 0}, "decay_steps"),
        ({"schedule": "warmup_cosine", "warmup_steps": 10, "decay_steps": 10}, "warmup_steps"),
        ({"decay_rate": 0.0}, "decay_rate"),
        ({"end_lr_factor": 1.5}, "end_lr_factor"),
        ({"clip_global_norm": 0.0}, "clip_global_norm"),
        ({"clip_value": -1.0}, "clip_value"),
        ({"decay_steps": 2.5}, "decay_steps"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimizerConfig(**kwargs)


def test_make_optimizer_rejects_non_config():
    with pytest.raises(ValueError, match="OptimizerConfig"):
        make_optimizer({"name": "adam"})


def _ref_lr(cfg: OptimizerConfig, t: int) -> float:
    lr, end = cfg.learning_rate, cfg.learning_rate * cfg.end_lr_factor
    if cfg.schedule == "constant":
        return lr
    if cfg.schedule == "cosine":
        a, T = cfg.end_lr_factor, cfg.decay_steps
        return lr * (a + (1 - a) * 0.5 * (1 + math.cos(math.pi * min(t, T) / T)))
    if cfg.schedule == "exponential":
        v = lr * cfg.decay_rate ** (t / cfg.decay_steps)
        return max(v, end) if cfg.decay_rate < 1 else v
    W, T = cfg.warmup_steps, cfg.decay_steps
    if t < W:
        return lr * t / W
    frac = min(t - W, T - W) / (T - W)
    return end + (lr - end) * 0.5 * (1 + math.cos(math.pi * frac))


SCHEDULES = [
    OptimizerConfig(learning_rate=0.3),
    OptimizerConfig(learning_rate=0.3, schedule="cosine", decay_steps=20, end_lr_factor=0.1),
    OptimizerConfig(learning_rate=0.3, schedule="exponential", decay_steps=5, decay_rate=0.5),
    OptimizerConfig(learning_rate=0.3, schedule="exponential", decay_steps=5, decay_rate=0.5, end_lr_factor=0.2),
    OptimizerConfig(
        learning_rate=0.3,
        schedule="warmup_cosine",
        warmup_steps=4,
        decay_steps=20,
        end_lr_factor=0.05,
    ),
]


@pytest.mark.parametrize("cfg", SCHEDULES, ids=lambda c: f"{c.schedule}-{c.end_lr_factor}")
def test_schedule_matches_closed_form(cfg):
    sched = make_schedule(cfg)
    for t in [0, 1, 2, 3, 4, 5, 7, 10, 13, 19, 20, 21, 40]:
        np.testing.assert_allclose(float(sched(t)), _ref_lr(cfg, t), rtol=RTOL, atol=1e-9, err_msg=f"step {t}")


@pytest.mark.parametrize("cfg", SCHEDULES[1:], ids=lambda c: f"{c.schedule}-{c.end_lr_factor}")
def test_sgd_update_uses_schedule(cfg):
    """SGD update at optimizer step t is -eta_t * g: the schedule is wired into the optimizer."""
    cfg = OptimizerConfig(**{**cfg.__dict__, "name": "sgd"})
    opt = make_optimizer(cfg)
    params = {"w": jnp.zeros(3)}
    g = {"w": jnp.array([1.0, -2.0, 0.5])}
    st = opt.init(params)
    for t in range(25):
        u, st = opt.update(g, st, params)
        np.testing.assert_allclose(
            np.asarray(u["w"]), -_ref_lr(cfg, t) * np.asarray(g["w"]), rtol=RTOL, atol=1e-9, err_msg=f"step {t}"
        )


def _sgd(**kw):
    return make_optimizer(OptimizerConfig(name="sgd", learning_rate=1.0, **kw))


@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_clip_global_norm(scale):
    rng = np.random.default_rng(0)
    g = {"a": rng.normal(size=(4, 3)) * scale, "b": rng.normal(size=(5,)) * scale}
    g = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g)
    norm = math.sqrt(sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in g.values()))
    c = 1.5
    opt = _sgd(clip_global_norm=c)
    u, _ = opt.update(g, opt.init(g), g)
    factor = min(1.0, c / norm)
    for k in g:
        np.testing.assert_allclose(np.asarray(u[k]), -factor * np.asarray(g[k]), rtol=RTOL)
    if scale > 1:  # the clip is active: the update's norm is exactly c
        un = math.sqrt(sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in u.values()))
        np.testing.assert_allclose(un, c, rtol=RTOL)


def test_clip_value_then_global_norm():
    g = {"w": jnp.array([3.0, -0.2, -5.0, 0.1])}
    opt = _sgd(clip_value=0.5)
    u, _ = opt.update(g, opt.init(g), g)
    np.testing.assert_allclose(np.asarray(u["w"]), -np.clip(np.asarray(g["w"]), -0.5, 0.5))
    # Element-wise clipping is applied first, then the global norm of the clipped gradient.
    opt = _sgd(clip_value=0.5, clip_global_norm=0.3)
    u, _ = opt.update(g, opt.init(g), g)
    clipped = np.clip(np.asarray(g["w"], np.float64), -0.5, 0.5)
    expect = -clipped * min(1.0, 0.3 / np.linalg.norm(clipped))
    np.testing.assert_allclose(np.asarray(u["w"]), expect, rtol=RTOL)


def _ref_updates(name, grads, params, lr, b1, b2, eps, wd):
    """Reference Adam / AdaMax / AdamW updates for a sequence of gradients (float64)."""
    m = np.zeros_like(params)
    v = np.zeros_like(params)
    p = params.copy()
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        m_hat = m / (1 - b1**t)
        if name == "adamax":
            v = np.maximum(b2 * v, np.abs(g) + eps)  # infinity norm (eps inside, as in optax)
            u = -lr * m_hat / v
        else:
            v = b2 * v + (1 - b2) * g**2
            v_hat = v / (1 - b2**t)
            u = -lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * p)
        out.append(u)
        p = p + u
    return out


@pytest.mark.parametrize("name, wd", [("adam", 0.0), ("adamax", 0.0), ("adamw", 0.1)])
def test_update_rule_matches_reference(name, wd):
    rng = np.random.default_rng(1)
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-6
    cfg = OptimizerConfig(name=name, learning_rate=lr, b1=b1, b2=b2, eps=eps, weight_decay=wd)
    opt = make_optimizer(cfg)
    p0 = rng.normal(size=6)
    grads = [rng.normal(size=6) for _ in range(5)]
    ref = _ref_updates(name, grads, p0, lr, b1, b2, eps, wd)
    params = jnp.asarray(p0, jnp.float32)
    st = opt.init(params)
    for t, g in enumerate(grads):
        u, st = opt.update(jnp.asarray(g, jnp.float32), st, params)
        np.testing.assert_allclose(np.asarray(u), ref[t], rtol=RTOL, atol=1e-9, err_msg=f"step {t}")
        params = optax.apply_updates(params, u)


def test_optimizer_state_is_arrays():
    """The chained, scheduled state is a pytree of arrays (checkpointable, donatable)."""
    cfg = OptimizerConfig(
        name="adamw",
        weight_decay=0.01,
        schedule="warmup_cosine",
        warmup_steps=2,
        decay_steps=10,
        clip_global_norm=1.0,
        clip_value=1.0,
    )
    st = make_optimizer(cfg).init({"w": jnp.zeros(3)})
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(st))
