"""Several members in one compiled program (jaxvae.train.multi): each member is the engine's step alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.data.loader import BatchIterator, StackedIterator
from jaxvae.train.multi import make_multi_train_step, member_state, num_members, stack_states
from jaxvae.train.optim import OptimizerConfig, make_optimizer
from jaxvae.train.state import LossOutput
from jaxvae.train.steps import create_train_state, make_train_step

D = 5


def loss_fn(params, model_state, batch, key):
    """Noisy linear regression; a per-member ``scale`` entry (when given) weights the loss."""
    x = batch["x"] + 0.1 * jax.random.normal(key, batch["x"].shape)
    err = x @ params["w"] + params["b"] - batch["y"]
    loss = jnp.mean(err**2) * batch.get("scale", 1.0)
    return LossOutput(loss, {"mse": jnp.mean(err**2)}, model_state)


def data(seed, n=8):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    return {"x": x, "y": (x @ rng.normal(size=D)).astype(np.float32)}


TX = make_optimizer(OptimizerConfig(learning_rate=0.05, clip_global_norm=1.0))
SEEDS = (3, 4, 7)


def member(seed):
    params = {"w": jax.random.normal(jax.random.key(seed), (D,)), "b": jnp.zeros(())}
    return create_train_state(jax.random.key(100 + seed), params, {}, TX)


def alone(seed, batches):
    """The engine's step run alone on ``batches``."""
    step = make_train_step(loss_fn, TX, donate=False)
    s = member(seed)
    for b in batches:
        s, _ = step(s, b)
    return s


def assert_member_is(state, i, ref):
    got = member_state(state, i)
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(ref.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(got.step) == int(ref.step) and int(got.skipped) == int(ref.skipped)


def test_shared_batch_each_member_equals_the_engine_step_alone():
    b = data(0)
    step = make_multi_train_step(loss_fn, TX)
    state = stack_states([member(s) for s in SEEDS])
    assert num_members(state) == 3 and state.step.shape == ()
    for _ in range(3):
        state, metrics = step(state, b)
    for i, s in enumerate(SEEDS):
        assert_member_is(state, i, alone(s, [b] * 3))
    assert int(state.step) == 3 and step.compile_count() == 1
    assert set(metrics) >= {"loss", "grad_norm", "mse", "loss_max_over_members", "skipped"}
    assert float(metrics["loss_max_over_members"]) >= float(metrics["loss"])
    assert step.count_examples(b) == 3 * 8


def test_per_member_batches_and_mixed_axes():
    own = [data(10 + i) for i in range(3)]
    stacked = {k: np.stack([o[k] for o in own]) for k in own[0]}
    step = make_multi_train_step(loss_fn, TX, batch_axes=0)
    state = stack_states([member(s) for s in SEEDS])
    for _ in range(2):
        state, _ = step(state, stacked)
    for i, s in enumerate(SEEDS):
        assert_member_is(state, i, alone(s, [own[i]] * 2))
    assert step.count_examples(stacked) == 3 * 8
    # a per-member setting next to a shared batch: member i trains with its own loss scale
    scales = np.array([0.5, 1.0, 2.0], np.float32)
    mixed = make_multi_train_step(loss_fn, TX, batch_axes={"scale": 0})
    state = stack_states([member(s) for s in SEEDS])
    b = data(0)
    state, _ = mixed(state, {**b, "scale": scales})
    for i, s in enumerate(SEEDS):
        assert_member_is(state, i, alone(s, [{**b, "scale": scales[i]}]))
    assert mixed.count_examples({**b, "scale": scales}) == 3 * 8


def test_device_tables_and_gather_give_the_same_update():
    table = data(0, n=32)
    idx = np.arange(8, dtype=np.int32) * 3
    step = make_multi_train_step(
        loss_fn,
        TX,
        tables={k: jnp.asarray(v) for k, v in table.items()},
        gather=lambda b, t: {k: t[k][b["i"]] for k in t},
    )
    state, _ = step(stack_states([member(s) for s in SEEDS]), {"i": idx})
    for i, s in enumerate(SEEDS):
        assert_member_is(state, i, alone(s, [{k: v[idx] for k, v in table.items()}]))


def test_a_non_finite_member_is_skipped_alone():
    b = data(0)
    bad = member(4)._replace(params={"w": jnp.full((D,), jnp.nan), "b": jnp.zeros(())})
    state = stack_states([member(3), bad])
    state, metrics = make_multi_train_step(loss_fn, TX)(state, b)
    assert int(metrics["skipped"]) == 1
    assert int(member_state(state, 0).skipped) == 0 and int(member_state(state, 1).skipped) == 1
    assert_member_is(state, 0, alone(3, [b]))


def test_bad_inputs_are_refused_by_name():
    with pytest.raises(ValueError, match="at least one TrainState"):
        stack_states([])
    with pytest.raises(ValueError, match="same step"):
        stack_states([member(3), member(4)._replace(step=jnp.ones((), jnp.int32))])
    with pytest.raises(ValueError, match="`batch_axes`"):
        make_multi_train_step(loss_fn, TX, batch_axes=1)
    with pytest.raises(ValueError, match="together"):
        make_multi_train_step(loss_fn, TX, tables={"x": jnp.ones(3)})
    step = make_multi_train_step(loss_fn, TX, batch_axes=0)
    with pytest.raises(ValueError, match=r"batch\['x'\].*S=2"):
        step(stack_states([member(3), member(4)]), {k: np.stack([v] * 3) for k, v in data(0).items()})
    with pytest.raises(ValueError, match="no member axis"):
        step(member(3), data(0))
    with pytest.raises(ValueError, match=r"`i` must lie in \[0, 2\)"):
        member_state(stack_states([member(3), member(4)]), 2)


def test_stacked_iterator_stacks_members_and_resumes():
    its = [BatchIterator(data(s, n=12), 4, seed=s) for s in (0, 1)]
    it = StackedIterator(its)
    first = next(it)
    assert first["x"].shape == (2, 4, D)
    state = it.get_state()
    a = next(it)
    it2 = StackedIterator([BatchIterator(data(s, n=12), 4, seed=s) for s in (0, 1)])
    it2.set_state(state)
    b = next(it2)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(ValueError, match="get_state"):
        StackedIterator([iter([{"x": 1}])])
    with pytest.raises(ValueError, match="holds 2 members"):
        StackedIterator([its[0]]).set_state(state)


def test_make_multi_step_vmaps_any_member_body():
    """A custom body (here: the engine's body, then a second update on the same batch) per member."""
    from jaxvae.train.multi import make_multi_step
    from jaxvae.train.steps import train_step_body

    def body(st, batch):
        st, _ = train_step_body(loss_fn, TX, st, batch, jax.random.fold_in(st.key, st.step))
        return train_step_body(loss_fn, TX, st, batch, jax.random.fold_in(st.key, st.step))

    b = data(0)
    state, metrics = make_multi_step(body)(stack_states([member(s) for s in SEEDS]), b)
    for i, s in enumerate(SEEDS):
        assert_member_is(state, i, alone(s, [b, b]))
    assert "loss_max_over_members" in metrics
    with pytest.raises(ValueError, match="`step_body` must be callable"):
        make_multi_step(None)
