"""Tests of the untapped / M2 experiment driver (experiments/inverted_ssvae/main.py)."""

import dataclasses
import hashlib
import json
import os

import jax
import numpy as np
import pytest

from experiments import _cli
from experiments.inverted_ssvae import main as E
from jaxvae.data.mnist import binarize_round, to_unit_float
from jaxvae.models import inverted_ssvae as m
from jaxvae.train.optim import OptimizerConfig, make_optimizer
from jaxvae.train.steps import create_train_state, make_train_step

CONFIGS = os.path.join(os.path.dirname(E.__file__), "configs")


def test_match_dims_is_greedy_by_probability_and_one_to_one():
    p = np.full((10, 10), 0.01)
    p[5, 8], p[6, 8], p[7, 5], p[8, 5], p[9, 9] = 0.9, 0.8, 0.7, 0.6, 0.5
    got = E.match_dims(p)
    assert got[5] == 8 and got[7] == 5 and got[9] == 9  # highest-probability claims win
    assert sorted(got.values()) == [5, 6, 7, 8, 9]  # every digit 5-9 used once
    assert got[6] in (6, 7) and got[8] in (6, 7)


def test_authors_matching_rule_keeps_uncontested_first_choices():
    p = np.full((10, 10), 0.01)
    # dims 5 and 6 both want digit 8; dim 7's uncontested first choice 9 (0.3) is lower than dim 6's
    # second choice 9 (0.5): the authors' rule keeps 9 for dim 7, the greedy rule gives it to dim 6.
    p[5, 8], p[6, 8], p[6, 9], p[7, 9], p[8, 5], p[9, 6] = 0.9, 0.8, 0.5, 0.3, 0.6, 0.6
    a, g = E.match_dims_argmax_first(p), E.match_dims(p)
    assert a[5] == 8 and a[7] == 9 and a[8] == 5 and a[9] == 6 and a[6] == 7
    assert g[6] == 9 and g[7] == 7
    # every dim in a clash: the best claimant of the first clashing digit wins, the rest re-match
    q = np.full((10, 10), 0.01)
    q[5:10, 5] = [0.5, 0.9, 0.4, 0.3, 0.2]
    q[5, 6], q[7, 7], q[8, 8], q[9, 9] = 0.3, 0.2, 0.2, 0.1
    b = E.match_dims_argmax_first(q)
    assert b[6] == 5 and b[5] == 6 and sorted(b.values()) == [5, 6, 7, 8, 9]
    rng = np.random.default_rng(0)
    for _ in range(50):  # always a one-to-one map of dims 5-9 onto digits 5-9
        assert sorted(E.match_dims_argmax_first(rng.random((10, 10))).values()) == [5, 6, 7, 8, 9]


def test_clipped_ce_is_the_authors_kl_and_caps_at_minus_log_eps():
    log_q = np.log(np.array([[0.7, 0.2, 0.1], [1 - 2e-9, 1e-9, 1e-9]]))
    got = E.clipped_ce(log_q, np.array([0, 1]))
    t0 = np.array([1.0, 1e-6, 1e-6])
    want0 = np.sum(t0 * (np.log(t0) - np.log([0.7, 0.2, 0.1])))
    np.testing.assert_allclose(got[0], want0, rtol=1e-9)
    assert abs(got[0] + np.log(0.7)) < 1e-4  # about the cross-entropy
    assert abs(got[1] + np.log(1e-6)) < 1e-3  # capped near 13.8 nats instead of 20.7


def _assert_each_seed_is_the_engine_step_on_its_batch(cfg, opt, single, state, seed_batches, steps=2):
    """Seed i of the multi-seed ``state`` equals the engine's step run ``steps`` times alone on its batch."""
    for i, (seed, b_i) in enumerate(seed_batches):
        params, ms = m.init(cfg, jax.random.key(seed))
        s = create_train_state(jax.random.key(10_000 + seed), params, ms, opt)
        for _ in range(steps):
            s, _ = single(s, b_i)
        for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(jax.tree.map(lambda x: x[i], state.params))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_multi_seed_step_equals_the_engine_step_run_per_seed():
    cfg = m.Config(hidden_y=(8,), hidden_z=(4,), hidden_x=(8,), x_dim=12)
    opt = make_optimizer(OptimizerConfig(learning_rate=1e-2, eps=1e-4, clip_value=1.0))
    loss_fn = m.make_loss_fn(cfg)
    rng = np.random.default_rng(0)
    batch = {
        "x_l": (rng.random((4, 12)) < 0.5).astype(np.float32),
        "y_l": np.arange(4, dtype=np.int32),
        "x_u": (rng.random((4, 12)) < 0.5).astype(np.float32),
        "y_u": m.corner_labels()[:4],
    }
    multi = E.make_multi_seed_step(loss_fn, opt)
    shared = E.init_multi_seed_state(cfg, opt, (3, 4))
    for _ in range(2):
        shared, metrics = multi(shared, batch)
    single = make_train_step(loss_fn, opt)
    _assert_each_seed_is_the_engine_step_on_its_batch(cfg, opt, single, shared, [(3, batch), (4, batch)])
    assert int(shared.step) == 2 and np.isfinite(float(metrics["loss"]))
    # batch_per_seed (data.per_seed): seed i trains on batch[...][i], as the engine step on that batch alone
    other = {**batch, "x_u": 1.0 - batch["x_u"], "x_l": batch["x_l"][::-1].copy()}
    stacked = {k: np.stack([batch[k], other[k]]) for k in batch}
    multi_ps = E.make_multi_seed_step(loss_fn, opt, batch_per_seed=True)
    state = E.init_multi_seed_state(cfg, opt, (3, 4))
    for _ in range(2):
        state, _ = multi_ps(state, stacked)
    _assert_each_seed_is_the_engine_step_on_its_batch(cfg, opt, single, state, [(3, batch), (4, other)])
    # seed 4's own batch made a difference: its params are not those of the shared-batch run
    assert not np.allclose(jax.tree.leaves(state.params)[0][1], jax.tree.leaves(shared.params)[0][1])


def test_stream_iterator_yields_three_streams_and_resumes():
    data = {
        "labeled": {"x_l": np.zeros((50, 784), np.float32), "y_l": np.arange(50, dtype=np.int32) % 5},
        "unlabeled": {"x_u": np.ones((40, 784), np.float32)},
        "corners": m.corner_labels(),
    }
    dc = E.DataConfig(batch_labeled=8, batch_unlabeled=8, batch_unfeatured=15)
    it = E.StreamIterator(data, dc, with_unfeatured=True, tau_schedule=lambda t: 1.0 / (1 + t))
    b = next(it)
    assert set(b) == {"x_l", "y_l", "x_u", "y_u", "temperature"} and b["y_u"].shape == (15, 10)
    np.testing.assert_allclose(b["y_u"][10], m.corner_labels()[0])
    state = it.get_state()
    nxt = next(it)
    it2 = E.StreamIterator(data, dc, with_unfeatured=True, tau_schedule=lambda t: 1.0 / (1 + t))
    it2.set_state(state)
    again = next(it2)
    for k in nxt:
        np.testing.assert_array_equal(nxt[k], again[k])


def test_configs_load_and_bad_override_is_rejected(tmp_path):
    for name in (
        "untapped",
        "m2_100",
        "smoke",
        "untapped_full",
        "untapped_full_codeweights",
        "untapped_full_codeinit",
        "untapped_full_codefull",
        "untapped_codefull_cpu",
    ):
        cfg = _cli.load_config(os.path.join(CONFIGS, f"{name}.py"))
        assert isinstance(cfg, E.ExperimentConfig)
    cfg, wd = _cli.parse(
        [
            "--config",
            os.path.join(CONFIGS, "untapped.py"),
            "--workdir",
            str(tmp_path),
            "--set",
            "run.num_steps=7",
            "--set",
            "model.reverse=z_sampled",
        ]
    )
    assert cfg.run.num_steps == 7 and cfg.model.reverse == "z_sampled"
    code = _cli.load_config(os.path.join(CONFIGS, "untapped_full_codeweights.py")).model
    assert (code.weight_fl, code.weight_fu, code.weight_ru, code.alpha_fd, code.alpha_rd) == (0.1, 0.1, 0.1, 1.0, 0.01)
    assert (code.fd_loss, code.rd_input, code.init_std) == ("concrete_sample", "hard_sample", None)
    init = _cli.load_config(os.path.join(CONFIGS, "untapped_full_codeinit.py")).model
    assert init == dataclasses.replace(code, init_std=0.001)
    full = _cli.load_config(os.path.join(CONFIGS, "untapped_full_codefull.py"))
    assert full.model == dataclasses.replace(
        init, z_scale_param="softplus_std", z_low=-6.0, z_high=6.0, reverse_z_low=-1.5, reverse_z_high=1.5
    )
    init_data = _cli.load_config(os.path.join(CONFIGS, "untapped_full_codeinit.py")).data
    assert full.data == dataclasses.replace(init_data, pixels="grey", unfeatured_z="fixed")
    cpu = _cli.load_config(os.path.join(CONFIGS, "untapped_codefull_cpu.py"))
    assert cpu.model == full.model and cpu.optim == full.optim and cpu.run.seeds == tuple(range(10))
    assert cpu.data == dataclasses.replace(full.data, batch_labeled=500, batch_unlabeled=500, batch_unfeatured=500)
    assert cpu.run.num_steps == 600
    with pytest.raises(ValueError, match="reverse"):
        _cli.apply_overrides(cfg, ["model.reverse=sideways"])
    with pytest.raises(ValueError, match="num_step"):
        _cli.apply_overrides(cfg, ["run.num_step=3"])
    with pytest.raises(ValueError):
        E.build_data(dataclasses.replace(E.DataConfig(), task="cifar"), mnist=object())


class _FakeMnist:
    """400 random uint8 "images" (300 train, 100 test) with random labels."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.x_train = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
        self.y_train = rng.integers(0, 10, 300).astype(np.uint8)
        self.x_test = rng.integers(0, 256, (100, 28, 28), dtype=np.uint8)
        self.y_test = rng.integers(0, 10, 100).astype(np.uint8)


def _hash(tree):
    s = hashlib.sha256()
    for k in sorted(tree):
        v = tree[k]
        if isinstance(v, dict):
            s.update(_hash(v).encode())
        else:
            s.update(k.encode())
            s.update(np.ascontiguousarray(v).tobytes())
    return s.hexdigest()[:16]


def _small_data_cfg(task="untapped", **kw):
    base = dict(
        task=task, num_unlabeled=50, batch_labeled=8, batch_unlabeled=8, batch_unfeatured=15, labeled_per_class=2
    )
    return E.DataConfig(**{**base, **kw})


# Hashes of build_data and of the first three batches from the code before the pixels / unfeatured_z
# options (commit d5d6c97), for the default DataConfig: existing runs see the same data.
_GOLDEN_DATA = {
    "untapped": ("068b7ed6c2f47f82", ["38f67df5aac5a8c9", "1257fda0e6fad345", "bf58918b41ffb294"]),
    "m2_100": ("eb5ec8d024776b99", ["7357aa6abe8a7544", "47337e772ba9032a", "904b3af9868fb15b"]),
}


@pytest.mark.parametrize("task", ["untapped", "m2_100"])
def test_default_data_options_reproduce_the_previous_data_and_batches(task):
    dc = _small_data_cfg(task)
    assert (dc.pixels, dc.unfeatured_z) == ("binary", "fresh")
    d = E.build_data(dc, mnist=_FakeMnist())
    it = E.StreamIterator(d, dc, with_unfeatured=True, model_cfg=m.Config())
    assert _hash(d) == _GOLDEN_DATA[task][0]
    assert [_hash(next(it)) for _ in range(3)] == _GOLDEN_DATA[task][1]
    assert it.z_u is None


@pytest.mark.parametrize("task", ["untapped", "m2_100"])
def test_grey_pixels_are_the_unrounded_images_in_unit_interval(task):
    fake = _FakeMnist()
    binary = E.build_data(_small_data_cfg(task), mnist=fake)
    grey = E.build_data(_small_data_cfg(task, pixels="grey"), mnist=fake)
    for k, sub in (("labeled", "x_l"), ("unlabeled", "x_u")):
        g = grey[k][sub]
        assert g.dtype == np.float32 and g.min() >= 0.0 and g.max() <= 1.0
        assert np.mean((g > 0) & (g < 1)) > 0.5  # not binary
        # the same images, same order: rounding the grey ones gives the binary data set
        np.testing.assert_array_equal(binarize_round(g), binary[k][sub])
    np.testing.assert_array_equal(binarize_round(grey["eval_x"]), binary["eval_x"])
    assert np.mean((grey["eval_x"] > 0) & (grey["eval_x"] < 1)) > 0.5  # evaluation images are grey too
    np.testing.assert_array_equal(grey["labeled"]["y_l"], binary["labeled"]["y_l"])
    src = np.concatenate([fake.x_train, fake.x_test]) if task == "untapped" else fake.x_train
    np.testing.assert_allclose(np.sort(grey["labeled"]["x_l"].ravel())[-5:], np.sort(to_unit_float(src).ravel())[-5:])


def test_fixed_unfeatured_set_repeats_the_same_ten_pairs_across_steps_and_batches():
    wide = m.Config(z_low=-6.0, z_high=6.0, reverse_z_low=-1.5, reverse_z_high=1.5)
    dc = _small_data_cfg(unfeatured_z="fixed", batch_unfeatured=25)
    d = E.build_data(dc, mnist=_FakeMnist())
    it = E.StreamIterator(d, dc, with_unfeatured=True, model_cfg=wide)
    batches = [next(it) for _ in range(4)]
    z0 = E.fixed_unfeatured_z(dc, wide)
    assert z0.shape == (10, 2) and z0.dtype == np.float32
    assert np.all(np.abs(z0) < 1.5) and len(np.unique(z0)) == 20  # the reverse box, 10 distinct z's
    for b in batches:
        assert b["z_u"].shape == (25, 2) and b["y_u"].shape == (25, 10)
        for i in range(25):  # row i pairs corner i mod 10 with z i mod 10, in every batch
            np.testing.assert_array_equal(b["z_u"][i], z0[i % 10])
            np.testing.assert_array_equal(b["y_u"][i], m.corner_labels()[i % 10])
    # the same set for another iterator (another variant) and after a resume; another data seed differs
    again = E.StreamIterator(d, dc, with_unfeatured=True, model_cfg=wide)
    again.set_state(it.get_state())
    np.testing.assert_array_equal(next(again)["z_u"], batches[0]["z_u"])
    other = E.fixed_unfeatured_z(dataclasses.replace(dc, data_seed=1), wide)
    assert not np.allclose(other, z0)
    # the fixed set leaves the labeled / unlabeled streams as they were
    fresh = E.StreamIterator(d, dataclasses.replace(dc, unfeatured_z="fresh"), with_unfeatured=True)
    b_fresh = next(fresh)
    assert "z_u" not in b_fresh
    for k in ("x_l", "y_l", "x_u"):
        np.testing.assert_array_equal(b_fresh[k], batches[0][k])
    # the loss takes the fixed pairs (z inside q's [-6, 6] box)
    small = dataclasses.replace(wide, hidden_y=(4,), hidden_z=(4,), hidden_x=(4,))
    out = m.make_loss_fn(small)(m.init(small, jax.random.key(0))[0], {}, batches[0], jax.random.key(1))
    assert np.isfinite(float(out.loss)) and np.isfinite(float(out.metrics["j_ru"]))
    # real z-space: N(0, I) draws
    zr = E.fixed_unfeatured_z(dc, m.Config(z_space="real", z_dim=5))
    assert zr.shape == (10, 5) and np.abs(zr).max() > 1.0
    with pytest.raises(ValueError, match="model_cfg"):
        E.StreamIterator(d, dc, with_unfeatured=True)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(pixels="gray"), r"data\.pixels.*binary.*grey"),
        (dict(unfeatured_z="once"), r"data\.unfeatured_z.*fresh.*fixed"),
    ],
)
def test_bad_data_option_raises_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        E.DataConfig(**kw)
    cfg = _cli.load_config(os.path.join(CONFIGS, "untapped.py"))
    with pytest.raises(ValueError, match=match):
        _cli.apply_overrides(cfg, [f"data.{k}={v}" for k, v in kw.items()])


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    E.main(["--config", os.path.join(CONFIGS, "smoke.py"), "--workdir", str(tmp_path)])
    res = json.load(open(tmp_path / "results.json"))
    assert set(res["variants"]) == {"M2", "untapped"}
    for v in res["variants"].values():
        assert len(v["per_seed"]) == 2
        assert np.isfinite(v["summary"]["ce_59"]["mean"])
        assert sorted(v["per_seed"][0]["dim_to_digit"].values()) == list(range(10))
        assert sorted(v["per_seed"][0]["dim_to_digit_authors"].values()) == list(range(10))
        assert np.isfinite(v["summary"]["ce_59_authors"]["mean"])
    assert "untapped_minus_m2_ce_59" in res
    assert (tmp_path / "decoded_onehots.png").is_file()


def test_per_seed_data_gives_each_seed_the_data_of_its_own_data_seed():
    fake = _FakeMnist()
    dc = _small_data_cfg(unfeatured_z="fixed", data_seed=3, per_seed=True)
    seeds = (0, 2, 5)
    per = E.build_seed_data(dc, seeds, mnist=fake)
    assert [E.seed_data_seed(dc, s) for s in seeds] == [3, 5, 8]
    for d, s in zip(per, seeds):  # what the seed would get alone with data seed 3 + s
        alone = E.build_data(dataclasses.replace(dc, data_seed=3 + s, per_seed=False), mnist=fake)
        assert _hash(d) == _hash(alone)
        assert d["labeled"] is per[0]["labeled"] and d["eval_x"] is per[0]["eval_x"]  # shared, not copied
    assert not np.array_equal(per[0]["unlabeled"]["x_u"], per[1]["unlabeled"]["x_u"])
    shared = E.build_seed_data(dataclasses.replace(dc, per_seed=False), seeds, mnist=fake)
    assert all(d is shared[0] for d in shared) and E.seed_data_seed(dataclasses.replace(dc, per_seed=False), 5) == 3
    for bad in ((), (1, 1)):
        with pytest.raises(ValueError, match="seeds.*non-empty and distinct"):
            E.build_seed_data(dc, bad, mnist=fake)
    with pytest.raises(ValueError, match="datas.*got none"):
        E.device_tables([], per_seed=True)
    # the stacked iterator: seed i's slice is seed i's own stream (batch order and fixed z's included)
    wide = m.Config(z_low=-6.0, z_high=6.0, reverse_z_low=-1.5, reverse_z_high=1.5)
    dcs = [dataclasses.replace(dc, data_seed=E.seed_data_seed(dc, s), per_seed=False) for s in seeds]
    make = lambda: E.SeedStackedIterator(
        [E.StreamIterator(d, c, with_unfeatured=True, model_cfg=wide) for d, c in zip(per, dcs)]
    )
    it = make()
    first = next(it)
    assert first["x_l"].shape == (3, 8, 784) and first["z_u"].shape == (3, 15, 2)
    for i, (d, c) in enumerate(zip(per, dcs)):
        own = next(E.StreamIterator(d, c, with_unfeatured=True, model_cfg=wide))
        for k in own:
            np.testing.assert_array_equal(first[k][i], own[k])
    assert not np.array_equal(first["z_u"][0], first["z_u"][1])
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
    nxt = next(it)
    again = make()
    again.set_state(state)
    for k, v in next(again).items():
        np.testing.assert_array_equal(v, nxt[k])
    with pytest.raises(ValueError, match="2 seeds' iterators, this one 3"):
        again.set_state({"seeds": state["seeds"][:2]})
    with pytest.raises(ValueError, match="at least one"):
        E.SeedStackedIterator([])


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(task="m2_100", per_seed=True), r"per_seed=True.*untapped"),
        (dict(per_seed=1), r"data\.per_seed.*True or False"),
    ],
)
def test_per_seed_option_is_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        E.DataConfig(**kw)


def test_confirm_config_is_codefull_on_new_seeds_each_with_its_own_data():
    full = _cli.load_config(os.path.join(CONFIGS, "untapped_full_codefull.py"))
    conf = _cli.load_config(os.path.join(CONFIGS, "untapped_full_confirm.py"))
    assert conf.model == full.model and conf.optim == full.optim
    assert conf.data == dataclasses.replace(full.data, per_seed=True)
    assert conf.run.seeds == tuple(range(10, 50)) and conf.run.num_steps == 600
    assert conf.run.variants == ("none", "z_observed")


def _host_and_index_iterators(per_seed):
    fake = _FakeMnist()
    dc = _small_data_cfg(unfeatured_z="fixed", per_seed=per_seed)
    seeds = (1, 2)
    datas = E.build_seed_data(dc, seeds, mnist=fake)
    dcs = [dataclasses.replace(dc, data_seed=E.seed_data_seed(dc, s), per_seed=False) for s in seeds]
    cfg = m.Config(
        hidden_y=(8,), hidden_z=(4,), hidden_x=(8,), z_low=-6.0, z_high=6.0, reverse_z_low=-1.5, reverse_z_high=1.5
    )

    def iterator(index):
        its = [
            E.StreamIterator(E.index_data(d) if index else d, c, with_unfeatured=True, model_cfg=cfg)
            for d, c in zip(datas, dcs)
        ]
        return E.SeedStackedIterator(its) if per_seed else its[0]

    return cfg, seeds, E.device_tables(datas, per_seed), iterator(False), iterator(True)


@pytest.mark.parametrize("per_seed", [False, True])
def test_device_data_sends_indices_that_gather_the_same_batches(per_seed):
    _, _, tables, host, idx = _host_and_index_iterators(per_seed)
    assert tables["x_u"].shape == ((2,) if per_seed else ()) + (50, 784)
    for _ in range(3):
        hb, ib = next(host), next(idx)
        assert set(ib) == {"i_l", "i_u", "y_u", "z_u"} and ib["i_l"].dtype == np.int32
        assert ib["i_l"].nbytes * 784 == hb["x_l"].nbytes  # indices instead of rows
        gathered = jax.jit(E._gather)(ib, tables)
        assert set(gathered) == set(hb)
        for k in hb:  # the very same rows, bit for bit
            np.testing.assert_array_equal(np.asarray(gathered[k]), hb[k])


@pytest.mark.slow
@pytest.mark.parametrize("per_seed", [False, True])
def test_device_data_step_trains_as_the_host_batch_step(per_seed):
    cfg, seeds, tables, host, idx = _host_and_index_iterators(per_seed)
    opt = make_optimizer(OptimizerConfig(learning_rate=1e-2, eps=1e-4, clip_value=1.0))
    loss_fn = m.make_loss_fn(cfg)
    on_host = E.make_multi_seed_step(loss_fn, opt, batch_per_seed=per_seed)
    on_device = E.make_multi_seed_step(loss_fn, opt, batch_per_seed=per_seed, tables=tables)
    sh, sd = E.init_multi_seed_state(cfg, opt, seeds), E.init_multi_seed_state(cfg, opt, seeds)
    for _ in range(2):
        sh, mh = on_host(sh, next(host))
        sd, md = on_device(sd, next(idx))
    for a, b in zip(jax.tree.leaves(sh.params), jax.tree.leaves(sd.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(mh["loss"]), float(md["loss"]), rtol=1e-6)


@pytest.mark.slow
def test_smoke_run_with_per_seed_data_on_the_device(tmp_path):
    E.main(
        [
            "--config",
            os.path.join(CONFIGS, "smoke.py"),
            "--workdir",
            str(tmp_path),
            "--set",
            "data.per_seed=True",
            "--set",
            "data.data_seed=100",
            "--set",
            "run.device_data=True",
            "--set",
            "data.unfeatured_z=fixed",
        ]
    )
    res = json.load(open(tmp_path / "results.json"))
    for v in res["variants"].values():
        assert [(p["seed"], p["data_seed"]) for p in v["per_seed"]] == [(0, 100), (1, 101)]
        assert v["steps_done"] == 3 and np.isfinite(v["summary"]["ce_59"]["mean"])
        # examples/s counts both seeds' batches of 16, not the leading (seed) axis of 2
        last = v["final_train_metrics"]
        assert last["examples_per_sec"] == pytest.approx(2 * 16 * last["steps_per_sec"], rel=1e-9)
    z = res["fixed_unfeatured_z"]["untapped"]  # one set of 10 per seed, each its data seed's
    assert np.shape(z) == (2, 10, 2)
    dc = E.DataConfig(data_seed=101, unfeatured_z="fixed")
    np.testing.assert_allclose(z[1], E.fixed_unfeatured_z(dc, m.Config()), rtol=0, atol=0)
    assert res["untapped_minus_m2_ce_59"]["paired"]["n"] == 2
