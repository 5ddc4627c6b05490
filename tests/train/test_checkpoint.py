"""CheckpointManager: round trip, atomicity against partial writes, wrong-model refusal, retention."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvae.train.checkpoint import CheckpointManager, tree_fingerprint
from jaxvae.train.state import TrainState


def _state(hidden=3, step=5, seed=0):
    k = jax.random.key(seed)
    params = {"w": jax.random.normal(k, (hidden, 2)), "b": jnp.arange(2.0)}
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    opt_state = tx.init(params)
    # make the moments non-trivial so the round trip is checked on real values
    _, opt_state = tx.update(jax.tree.map(jnp.ones_like, params), opt_state, params)
    return TrainState(
        step=jnp.int32(step),
        params=params,
        model_state={},
        opt_state=opt_state,
        key=jax.random.key(seed + 1),
        skipped=jnp.int32(2),
    )


def _bits(tree):
    tree = jax.tree.map(lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x, tree)
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_bitwise(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(_bits(a), _bits(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x.reshape(-1).view(np.uint8), y.reshape(-1).view(np.uint8))


def test_round_trip_bitwise_with_typed_key_and_json_items(tmp_path):
    st = _state()
    ckpt = CheckpointManager(tmp_path)
    ckpt.save(5, st, data_state={"epoch": np.int64(1), "position": 3}, config={"model": {"h": (3,)}})
    ckpt.close()
    fresh = _state(seed=7)  # same structure, different values: the target only gives the structure
    out = CheckpointManager(tmp_path).restore_latest(fresh)
    assert out is not None
    state, data_state, config = out
    _assert_bitwise(state, st)
    assert jax.random.key_impl(state.key) == jax.random.key_impl(st.key)
    assert data_state == {"epoch": 1, "position": 3}
    assert config == {"model": {"h": [3]}}


def test_empty_directory_restores_none(tmp_path):
    assert CheckpointManager(tmp_path / "none").restore_latest(_state()) is None


def test_keeps_latest_and_restores_newest(tmp_path):
    ckpt = CheckpointManager(tmp_path, keep=2)
    for s in (1, 2, 3):
        ckpt.save(s, _state(step=s), data_state={"s": s}, config={})
    assert ckpt.all_steps() == [2, 3]
    state, data_state, _ = ckpt.restore_latest(_state())
    assert int(state.step) == 3 and data_state == {"s": 3}


def test_partial_writes_are_ignored(tmp_path):
    """A kill during a save leaves a tmp dir (or a step dir without metadata): restore skips it."""
    ckpt = CheckpointManager(tmp_path)
    ckpt.save(4, _state(step=4), data_state={"s": 4}, config={})
    # what Orbax leaves when killed mid-write: an unfinished temporary directory ...
    tmp = tmp_path / "8.orbax-checkpoint-tmp-1234567" / "state"
    tmp.mkdir(parents=True)
    (tmp / "garbage").write_bytes(b"\x00" * 10)
    # ... and, on file systems without atomic rename, a step directory without its metadata file
    (tmp_path / "9" / "state").mkdir(parents=True)
    fresh = CheckpointManager(tmp_path)
    assert fresh.latest_step() == 4
    state, data_state, _ = fresh.restore_latest(_state())
    assert int(state.step) == 4 and data_state == {"s": 4}


def test_different_model_is_refused_with_what_differs(tmp_path):
    ckpt = CheckpointManager(tmp_path)
    ckpt.save(5, _state(hidden=3), data_state={}, config={"model": {"hidden": [3]}})
    with pytest.raises(ValueError) as e:
        CheckpointManager(tmp_path).restore_latest(_state(hidden=4), expected_config={"model": {"hidden": [4]}})
    msg = str(e.value)
    assert "different run" in msg
    assert "['w']" in msg and "(3, 2)" in msg and "(4, 2)" in msg
    assert "config model.hidden" in msg
    assert "fresh workdir" in msg  # says what to do


def test_same_shapes_different_model_config_is_refused(tmp_path):
    ckpt = CheckpointManager(tmp_path)
    ckpt.save(5, _state(), data_state={}, config={"model": {"activation": "tanh"}})
    with pytest.raises(ValueError, match="activation"):
        CheckpointManager(tmp_path).restore_latest(_state(), expected_config={"model": {"activation": "relu"}})
    # other config sections may change on resume (e.g. train.num_steps)
    out = CheckpointManager(tmp_path).restore_latest(
        _state(), expected_config={"model": {"activation": "tanh"}, "train": {"num_steps": 9}}
    )
    assert out is not None


def test_fingerprint_sees_shape_and_dtype():
    a = tree_fingerprint({"w": jnp.zeros((2, 3))})
    assert a != tree_fingerprint({"w": jnp.zeros((3, 2))})
    assert a != tree_fingerprint({"w": jnp.zeros((2, 3), jnp.int32)})
    assert a == tree_fingerprint({"w": jax.ShapeDtypeStruct((2, 3), jnp.float32)})


def test_bad_keep():
    with pytest.raises(ValueError, match="keep"):
        CheckpointManager("/tmp/unused-ckpt-dir", keep=0)
