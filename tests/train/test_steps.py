"""The single-device train and eval steps: compilation count, donation, per-step keys,
skip-on-non-finite,
batch checking, and agreement with a hand-written step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvae.train.optim import OptimizerConfig, make_optimizer
from jaxvae.train.state import LossOutput, TrainState
from jaxvae.train.steps import create_train_state, make_eval_step, make_train_step

B, D = 16, 3


def _data(seed=0, n=B):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3).astype(np.float32)
    return {"x": x, "y": y}


def _params():
    return {"w": jnp.zeros((D,)), "b": jnp.zeros(())}


def noisy_regression_loss(params, model_state, batch, key):
    """Mean squared error with input noise drawn from ``key`` (a stochastic loss), plus a counter in
    model_state (stands in for batch statistics)."""
    noise = 0.1 * jax.random.normal(key, batch["x"].shape)
    pred = (batch["x"] + noise) @ params["w"] + params["b"]
    loss = jnp.mean((pred - batch["y"]) ** 2)
    ms = {"count": model_state["count"] + 1}
    return LossOutput(loss, {"mse": loss, "u": jax.random.uniform(key)}, ms)


def _state(opt, seed=0):
    ms = {"count": jnp.zeros((), jnp.int32)}
    return create_train_state(jax.random.key(seed), _params(), ms, opt)


@functools.cache
def _adam():
    return make_optimizer(OptimizerConfig(learning_rate=0.05))


@functools.cache
def _adam_step(donate=True):
    """Shared across tests (compiles once per process; a batch of B examples throughout)."""
    return make_train_step(noisy_regression_loss, _adam(), donate=donate)


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _host(tree):
    return jax.tree.map(
        lambda x: np.array(x) if not jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else np.array(jax.random.key_data(x)),
        tree,
    )


def test_create_train_state():
    opt = _adam()
    params = _params()
    st = create_train_state(jax.random.key(3), params, None, opt)
    assert isinstance(st, TrainState)
    assert int(st.step) == 0 and int(st.skipped) == 0
    assert st.step.dtype == jnp.int32 and st.skipped.dtype == jnp.int32
    assert st.model_state == {}
    assert _leaves_equal(st.params, params)
    with pytest.raises(ValueError, match="key"):
        create_train_state(jnp.zeros(3), params, {}, opt)
    with pytest.raises(ValueError, match="optimizer"):
        create_train_state(jax.random.key(0), params, {}, object())


def test_matches_hand_written_step():
    """Five steps equal an explicit value_and_grad + optax loop with keys fold_in(key, t)."""
    opt = _adam()
    step = _adam_step()
    batch = _data()
    st = _state(opt)
    key = jax.random.key(0)
    p, ms, os_ = _params(), {"count": jnp.zeros((), jnp.int32)}, opt.init(_params())

    @jax.jit
    def ref_grad(p, ms, kt):
        return jax.value_and_grad(lambda q: tuple(noisy_regression_loss(q, ms, batch, kt)[::2]), has_aux=True)(p)

    @jax.jit
    def ref_update(g, os_, p):
        u, os_ = opt.update(g, os_, p)
        return optax.apply_updates(p, u), os_

    for t in range(5):
        st, m = step(st, batch)
        (loss, out), g = ref_grad(p, ms, jax.random.fold_in(key, t))
        p, os_ = ref_update(g, os_, p)
        ms = out
        np.testing.assert_allclose(float(m["loss"]), float(loss), rtol=1e-6)
        np.testing.assert_allclose(float(m["grad_norm"]), float(optax.tree.norm(g)), rtol=1e-6)
    for k in p:
        np.testing.assert_allclose(np.asarray(st.params[k]), np.asarray(p[k]), rtol=1e-6, atol=1e-7)
    assert int(st.step) == 5 and int(st.model_state["count"]) == 5 and int(st.skipped) == 0


def test_metrics_are_scalars_and_fold_in_keys_differ_per_step():
    opt = _adam()
    step = _adam_step()
    st = _state(opt, seed=7)
    batch = _data()
    us = []
    for t in range(4):
        st, m = step(st, batch)
        assert set(m) == {"loss", "mse", "u", "grad_norm", "skipped"}
        assert all(jnp.shape(v) == () for v in m.values())
        us.append(float(m["u"]))
        expect = float(jax.random.uniform(jax.random.fold_in(jax.random.key(7), t)))
        assert us[-1] == expect
    assert len(set(us)) == 4


def test_no_recompilation_across_steps():
    opt = _adam()
    step = _adam_step()
    ev = make_eval_step(lambda p, ms, b, k: {"se": (b["x"] @ p["w"] - b["y"]) ** 2})
    st = _state(opt)
    st, _ = step(st, _data(0))
    assert step.compile_count() == 1
    ev(st, _data(0), jax.random.key(0))
    with jax.log_compiles(True):
        import logging

        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("jax").addHandler(handler)
        try:
            for i in range(1, 6):  # new data every step, same shapes
                st, m = step(st, _data(i))
                float(m["loss"])
                ev(st, _data(i), jax.random.key(i))
        finally:
            logging.getLogger("jax").removeHandler(handler)
    compiles = [r for r in records if "ompil" in r.getMessage()]
    assert compiles == [], [r.getMessage() for r in compiles]
    assert step.compile_count() == 1
    assert ev.compile_count() == 1


def test_donation_invalidates_old_state_and_reuse_works():
    opt = _adam()
    params = _params()
    st = create_train_state(jax.random.key(0), params, {"count": jnp.zeros((), jnp.int32)}, opt)
    step = _adam_step()
    old = st
    st, _ = step(st, _data())
    assert old.params["w"].is_deleted(), "state buffers were not donated"
    # The caller's arrays survive (create_train_state copied them) and the step keeps working.
    assert not params["w"].is_deleted()
    np.testing.assert_array_equal(np.asarray(params["w"]), np.zeros(D))
    for _ in range(3):
        st, m = step(st, _data())
        assert np.isfinite(float(m["loss"]))
    with pytest.raises(ValueError, match="donated to an earlier call"):
        step(old, _data())


def test_no_donation_keeps_old_state():
    opt = _adam()
    step = _adam_step(donate=False)
    st0 = _state(opt)
    st1, _ = step(st0, _data())
    st1b, _ = step(st0, _data())
    assert not st0.params["w"].is_deleted()
    assert _leaves_equal(_host(st1), _host(st1b))


def _poison_loss(params, model_state, batch, key):
    """Finite unless ``batch['flag'] == 1`` (NaN loss) or ``== 2`` (finite loss, inf gradient)."""
    loss, metrics, ms = noisy_regression_loss(params, model_state, batch, key)
    flag = batch["flag"][0]
    loss = jnp.where(flag == 1, jnp.nan, loss)
    # d/dw sqrt(|w - w0|) at w = w0 is inf while the value is 0.
    w0 = jax.lax.stop_gradient(params["w"])
    # lax.cond, not jnp.where: the untaken branch's inf gradient must not leak into good steps.
    loss = loss + jax.lax.cond(flag == 2, lambda: jnp.sum(jnp.sqrt(jnp.abs(params["w"] - w0))), lambda: jnp.zeros(()))
    return LossOutput(loss, metrics, ms)


@pytest.mark.parametrize("bad_flag", [1, 2], ids=["nan_loss", "inf_grad"])
def test_non_finite_step_is_skipped_and_counted(bad_flag):
    opt = make_optimizer(OptimizerConfig(learning_rate=0.05, clip_global_norm=1.0))
    step = make_train_step(_poison_loss, opt)
    st = _state(opt)
    good = {**_data(), "flag": np.zeros(B, np.int32)}
    bad = {**_data(), "flag": np.full(B, bad_flag, np.int32)}
    for _ in range(2):
        st, m = step(st, good)
    before = _host(st)
    st, m = step(st, bad)  # step index 2 is the chosen bad step
    after = _host(st)
    assert int(m["skipped"]) == 1 and int(st.skipped) == 1
    assert int(st.step) == 3
    assert _leaves_equal(before.params, after.params)
    assert _leaves_equal(before.opt_state, after.opt_state)
    assert _leaves_equal(before.model_state, after.model_state)
    if bad_flag == 1:
        assert np.isnan(float(m["loss"]))
    else:
        assert not np.isfinite(float(m["grad_norm"]))
    st, m = step(st, good)  # training continues and applies good steps again
    assert int(st.skipped) == 1 and int(st.step) == 4
    assert not _leaves_equal(after.params, _host(st).params)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(_host(st).params))


def _nan_update_optimizer():
    """Finite gradients in, NaN updates out on its second call (like Adam with eps = 0 at g = 0)."""

    def init(params):
        return jnp.zeros((), jnp.int32)

    def update(grads, count, params=None):
        bad = count == 1
        return jax.tree.map(lambda g: jnp.where(bad, jnp.nan, -0.1 * g), grads), count + 1

    return optax.GradientTransformation(init, update)


def test_non_finite_applied_values_are_skipped():
    """A finite loss and gradient whose update is not finite (an optimizer's NaN, an overflow) is refused
    on the applied values: the state keeps its values."""
    opt = _nan_update_optimizer()
    step = make_train_step(noisy_regression_loss, opt)
    st = _state(opt)
    st, m = step(st, _data())
    before = _host(st)
    st, m = step(st, _data())  # finite loss and gradient, NaN update
    assert np.isfinite(float(m["loss"])) and np.isfinite(float(m["grad_norm"]))
    assert int(st.skipped) == 1
    after = _host(st)
    assert _leaves_equal(before.params, after.params)
    assert _leaves_equal(before.opt_state, after.opt_state)
    assert _leaves_equal(before.model_state, after.model_state)


def test_batch_mismatch_raises_instead_of_recompiling():
    opt = _adam()
    step = _adam_step()
    st = _state(opt)
    st, _ = step(st, _data())
    n_programs = step.compile_count()
    d = _data()
    with pytest.raises(ValueError, match=r"\['x'\]: float32\[8, 3\]"):
        step(st, _data(n=8))
    with pytest.raises(ValueError, match="float64"):
        step(st, {"x": d["x"].astype(np.float64), "y": d["y"]})
    with pytest.raises(ValueError, match="does not match"):
        step(st, {**d, "extra": d["y"]})
    assert step.compile_count() == n_programs == 1
    st, m = step(st, d)  # the state survived the rejected calls (nothing was donated)
    assert np.isfinite(float(m["loss"]))


def test_bad_loss_fn_outputs():
    opt = _adam()
    st = _state(opt)

    def vector_loss(p, ms, b, k):
        return LossOutput((b["x"] @ p["w"] - b["y"]) ** 2, {}, ms)

    with pytest.raises(ValueError, match="scalar loss"):
        make_train_step(vector_loss, opt, donate=False)(st, _data())

    def vector_metric(p, ms, b, k):
        out = noisy_regression_loss(p, ms, b, k)
        return out._replace(metrics={"per_ex": b["y"]})

    with pytest.raises(ValueError, match="per_ex"):
        make_train_step(vector_metric, opt, donate=False)(st, _data())
    with pytest.raises(ValueError, match="callable"):
        make_train_step(None, opt)


def test_eval_step_per_example_and_checks():
    opt = _adam()
    st = _state(opt)

    def eval_fn(p, ms, b, k):
        return {"se": (b["x"] @ p["w"] + p["b"] - b["y"]) ** 2, "noise": jax.random.normal(k, (b["x"].shape[0],))}

    ev = make_eval_step(eval_fn)
    d = _data()
    out = ev(st, d, jax.random.key(5))
    np.testing.assert_allclose(np.asarray(out["se"]), d["y"] ** 2, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out["noise"]), np.asarray(jax.random.normal(jax.random.key(5), (B,))))
    with pytest.raises(ValueError, match="does not match"):
        ev(st, _data(n=4), jax.random.key(5))
    bad = make_eval_step(lambda p, ms, b, k: {"m": jnp.mean(b["y"])})
    with pytest.raises(ValueError, match=r"'m' must be per-example"):
        bad(st, d, jax.random.key(0))


def test_jit_false_matches_jit():
    opt = _adam()
    fast = _adam_step()
    slow = make_train_step(noisy_regression_loss, opt, jit=False)
    a, b = _state(opt), _state(opt)
    for i in range(2):  # eager op-by-op execution is slow; two steps exercise the state threading
        a, ma = fast(a, _data(i))
        b, mb = slow(b, _data(i))
        np.testing.assert_allclose(float(ma["loss"]), float(mb["loss"]), rtol=1e-6)
    for k in ("w", "b"):
        np.testing.assert_allclose(np.asarray(a.params[k]), np.asarray(b.params[k]), rtol=1e-5, atol=1e-7)


def test_compiler_options_reach_xla_and_keep_the_results():
    # a real XLA:CPU option (matmuls to XLA's own emitter) gives the same step to float32 rounding
    opt = _adam()
    batch = _data()
    opts = {"xla_cpu_experimental_ynn_fusion_type": ""}
    plain = _adam_step(donate=False)
    tuned = make_train_step(noisy_regression_loss, opt, donate=False, compiler_options=opts)
    st_a, st_b = _state(opt), _state(opt)
    for _ in range(3):
        st_a, _ = plain(st_a, batch)
        st_b, _ = tuned(st_b, batch)
    for k in st_a.params:
        np.testing.assert_allclose(np.asarray(st_b.params[k]), np.asarray(st_a.params[k]), rtol=1e-5, atol=1e-6)
    ev = make_eval_step(lambda p, ms, b, k: {"err": (b["x"] @ p["w"] - b["y"]) ** 2}, compiler_options=opts)
    np.testing.assert_allclose(
        np.asarray(ev(st_b, batch, jax.random.key(0))["err"]),
        (batch["x"] @ np.asarray(st_b.params["w"]) - batch["y"]) ** 2,
        rtol=1e-5,
    )
    # the options are really passed: an unknown one is refused by XLA at the first call
    bad = make_train_step(noisy_regression_loss, opt, donate=False, compiler_options={"xla_no_such_option": "1"})
    with pytest.raises(Exception, match="xla_no_such_option"):
        bad(_state(opt), batch)
    with pytest.raises(ValueError, match="compiler_options"):
        make_eval_step(lambda *a: {}, compiler_options=["xla_cpu_use_xnnpack"])


def _deterministic_loss(params, model_state, batch, key):
    """Batch-mean squared error without noise, and a model_state counter of the examples seen."""
    del key
    err = batch["x"] @ params["w"] + params["b"] - batch["y"]
    loss = jnp.mean(err**2)
    ms = {"count": model_state["count"] + batch["x"].shape[0]}
    return LossOutput(loss, {"mse": loss, "max_err": jnp.max(jnp.abs(err))}, ms)


@pytest.mark.parametrize("mode", ["scan", "branches"])
@pytest.mark.parametrize("microbatch", [4, 8, 16])
def test_microbatch_gives_the_full_batch_gradient(microbatch, mode):
    opt = _adam()
    batch = _data()  # B = 16
    full = make_train_step(_deterministic_loss, opt, donate=False)
    split = make_train_step(_deterministic_loss, opt, donate=False, microbatch=microbatch, microbatch_mode=mode)
    st_a, st_b = _state(opt), _state(opt)
    for _ in range(4):
        st_a, m_a = full(st_a, batch)
        st_b, m_b = split(st_b, batch)
        np.testing.assert_allclose(float(m_b["loss"]), float(m_a["loss"]), rtol=1e-6)
        np.testing.assert_allclose(float(m_b["grad_norm"]), float(m_a["grad_norm"]), rtol=1e-5)
    for k in st_a.params:
        np.testing.assert_allclose(np.asarray(st_b.params[k]), np.asarray(st_a.params[k]), rtol=1e-5, atol=1e-6)
    # model_state passes through every slice: 16 examples counted per step either way
    assert int(st_b.model_state["count"]) == int(st_a.model_state["count"]) == 4 * B
    # metrics are slice means: max_err becomes the mean of the slices' maxima (<= the batch max)
    assert float(m_b["max_err"]) <= float(m_a["max_err"]) + 1e-6


def test_microbatch_slices_draw_independent_noise():
    # slice i uses fold_in(key, i): the noisy loss differs from the unsplit step's draws, yet is finite
    opt = _adam()
    split = make_train_step(noisy_regression_loss, opt, donate=False, microbatch=4)
    st, m = split(_state(opt), _data())
    st_full, m_full = _adam_step(donate=False)(_state(opt), _data())
    assert np.isfinite(float(m["loss"])) and float(m["u"]) != float(m_full["u"])
    assert int(st.step) == 1


def test_microbatch_branches_match_the_scan_draw_for_draw():
    # the same slices and keys fold_in(key, i): a noisy loss gives the scan's loss, metrics and params
    opt = _adam()
    scan = make_train_step(noisy_regression_loss, opt, donate=False, microbatch=4)
    branches = make_train_step(noisy_regression_loss, opt, donate=False, microbatch=4, microbatch_mode="branches")
    st_a, st_b = _state(opt), _state(opt)
    for _ in range(3):
        st_a, m_a = scan(st_a, _data())
        st_b, m_b = branches(st_b, _data())
        for name in m_a:
            np.testing.assert_allclose(float(m_b[name]), float(m_a[name]), rtol=1e-5, err_msg=name)
    for k in st_a.params:
        np.testing.assert_allclose(np.asarray(st_b.params[k]), np.asarray(st_a.params[k]), rtol=1e-5, atol=1e-6)

    # the scan is a loop in the compiled program; the branches are not (traced side by side). A loss
    # without draws, so that no random-bits loop is left in the optimized program.
    def compiled(mode):
        step = make_train_step(_deterministic_loss, opt, donate=False, microbatch=4, microbatch_mode=mode)
        return step.fn.lower(_state(opt), _data()).compile().as_text()

    assert " while(" in compiled("scan") and " while(" not in compiled("branches")


def test_microbatch_errors():
    opt = _adam()
    with pytest.raises(ValueError, match="microbatch_mode"):
        make_train_step(_deterministic_loss, opt, microbatch=4, microbatch_mode="unrolled")
    with pytest.raises(ValueError, match="microbatch"):
        make_train_step(_deterministic_loss, opt, microbatch=0)
    with pytest.raises(ValueError, match="microbatch"):
        make_train_step(_deterministic_loss, opt, microbatch=2.5)
    step = make_train_step(_deterministic_loss, opt, donate=False, microbatch=5)
    with pytest.raises(ValueError, match="must divide the batch size 16"):
        step(_state(opt), _data())
    from jaxvae.train.sharding import make_data_mesh

    with pytest.raises(ValueError, match="mesh"):
        make_train_step(_deterministic_loss, opt, microbatch=4, mesh=make_data_mesh())


def test_a_scalar_batch_entry_does_not_break_the_step():
    """A scalar setting in the batch (e.g. a temperature) sorts before 'x': the batch size comes from the
    arrays that have a leading axis."""

    def loss(params, model_state, batch, key):
        del key
        value = batch["temperature"] * jnp.mean(jnp.square(batch["x"] @ params["w"]))
        return LossOutput(value, {}, model_state)

    tx = optax.sgd(0.1)
    state = create_train_state(jax.random.key(0), {"w": jnp.ones((3,))}, {}, tx)
    batch = {"x": np.ones((4, 3), np.float32), "temperature": np.float32(0.5)}
    for mb in (None, 2):
        new, metrics = make_train_step(loss, tx, donate=False, microbatch=mb)(state, batch)
        np.testing.assert_allclose(metrics["loss"], 0.5 * 9.0, rtol=1e-6)
    out = make_eval_step(lambda p, ms, b, k: {"v": b["temperature"] * b["x"].sum(-1)})(state, batch, jax.random.key(1))
    np.testing.assert_allclose(out["v"], 1.5, rtol=1e-6)


def test_a_refused_first_batch_does_not_fix_the_expected_shape():
    """A first call rightly refused (here by the loss's own shape check) leaves the step unfixed: the
    corrected batch then runs, instead of being refused against the shape that failed."""

    def loss(params, model_state, batch, key):
        del key
        if batch["x"].ndim != 2:
            raise ValueError(f"`x` must be [B, 3]; got {batch['x'].shape}")
        return LossOutput(jnp.mean(batch["x"] @ params["w"]), {}, model_state)

    tx = optax.sgd(0.1)
    step = make_train_step(loss, tx, donate=False)
    state = create_train_state(jax.random.key(0), {"w": jnp.ones((3,))}, {}, tx)
    with pytest.raises(ValueError, match=r"must be \[B, 3\]"):
        step(state, {"x": np.ones((4, 1, 3), np.float32)})
    assert step.batch_spec is None
    _, metrics = step(state, {"x": np.ones((4, 3), np.float32)})
    np.testing.assert_allclose(metrics["loss"], 3.0)
    with pytest.raises(ValueError, match="does not match the batch this step was compiled for"):
        step(state, {"x": np.ones((5, 3), np.float32)})


def test_a_loss_that_declares_step_gets_the_state_step():
    """Schedules have a way in: ``step`` reaches a loss that asks for it, in every step builder."""
    from jaxvae.train.multi import make_multi_train_step, stack_states
    from jaxvae.train.steps import takes_step

    seen = []

    def loss(params, model_state, batch, key, *, step=0):
        weight = jnp.minimum(1.0, step / 4.0)  # a warm-up over 4 steps
        return LossOutput(weight * jnp.mean(batch["x"] @ params["w"]), {"weight": weight}, model_state)

    tx = optax.sgd(0.0)
    state = create_train_state(jax.random.key(0), {"w": jnp.ones((3,))}, {}, tx)
    batch = {"x": np.ones((4, 3), np.float32)}
    step = make_train_step(loss, tx)
    for _ in range(6):
        state, metrics = step(state, batch)
        seen.append(float(metrics["weight"]))
    assert seen == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    for mb in (2,):
        s0 = create_train_state(jax.random.key(0), {"w": jnp.ones((3,))}, {}, tx)
        s0, _ = make_train_step(loss, tx, microbatch=mb)(s0, batch)
        _, m = make_train_step(loss, tx, microbatch=mb)(s0, batch)
        assert float(m["weight"]) == 0.25
    multi = make_multi_train_step(loss, tx)
    st = stack_states([create_train_state(jax.random.key(i), {"w": jnp.ones((3,))}, {}, tx) for i in range(2)])
    for _ in range(3):
        st, m = multi(st, batch)
    assert float(m["weight"]) == 0.5
    assert takes_step(loss) and takes_step(lambda *a, **k: None) and not takes_step(lambda p, ms, b, k: None)


def test_an_update_that_overflows_the_parameters_is_refused():
    """Adam with lr 3e38: the first update moves the parameters to ~3e38 (finite), every later one would
    overflow them to inf; the guard refuses those and keeps the parameters finite."""
    opt = optax.adam(3e38)
    step = make_train_step(noisy_regression_loss, opt)
    st = _state(opt)
    for _ in range(3):
        st, m = step(st, _data())
    assert int(st.skipped) == 2
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(st.params))


def test_an_empty_batch_is_refused_not_a_nan_loss():
    """A [0, D] batch would average over nothing (a NaN loss, counted as a skipped step): an error that
    names the entry, for the train and the eval step; the step stays unfixed and then runs."""
    step = make_train_step(noisy_regression_loss, _adam(), donate=False)
    state = _state(_adam())
    empty = {"x": np.zeros((0, D), np.float32), "y": np.zeros((0,), np.float32)}
    with pytest.raises(ValueError, match=r"batch entry \['x'\] has shape \(0, 3\): no examples"):
        step(state, empty)
    assert step.batch_spec is None
    _, metrics = step(state, _data())
    assert np.isfinite(metrics["loss"])
    ev = make_eval_step(lambda params, model_state, batch, key: {"pred": batch["x"] @ params["w"]})
    with pytest.raises(ValueError, match="no examples"):
        ev(state, empty, jax.random.key(0))
