"""The data streams of the Gemp experiment (experiments/inverted_ssvae/data.py)."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from experiments import _cli
from experiments.inverted_ssvae import data as D
from experiments.inverted_ssvae.configs import DataConfig, ExperimentConfig
from jaxvae.data.loader import StackedIterator
from jaxvae.data.mnist import binarize_round, to_unit_float
from jaxvae.models import inverted_ssvae as m
from tests.experiments.inverted_ssvae_fakes import FakeMnist, small_cfg, tree_hash

WIDE = m.Config(z_low=-6.0, z_high=6.0, code=m.AuthorsCode(reverse_z_low=-1.5, reverse_z_high=1.5))


# Hashes of build_data and of the first three batches from the code before the pixels / unfeatured_z
# options (commit d5d6c97), for the default DataConfig: the data did not change through two refactors.
GOLDEN = {
    "untapped": ("068b7ed6c2f47f82", ["38f67df5aac5a8c9", "1257fda0e6fad345", "bf58918b41ffb294"]),
    "m2_100": ("eb5ec8d024776b99", ["7357aa6abe8a7544", "47337e772ba9032a", "904b3af9868fb15b"]),
}


@pytest.mark.parametrize("task", ["untapped", "m2_100"])
def test_default_data_options_reproduce_the_previous_data_and_batches(task):
    dc = small_cfg(task)
    assert (dc.pixels, dc.unfeatured_z) == ("binary", "fresh")
    d = D.build_data(dc, mnist=FakeMnist())
    it = D.StreamIterator(d, dc, with_unfeatured=True, model_cfg=m.Config())
    assert tree_hash(d) == GOLDEN[task][0]
    assert [tree_hash(next(it)) for _ in range(3)] == GOLDEN[task][1]
    assert it.z_u is None


def test_untapped_task_labels_digits_0_4_and_evaluates_5_9():
    fake = FakeMnist()
    d = D.build_data(small_cfg(), mnist=fake)
    y_all = np.concatenate([fake.y_train, fake.y_test])
    assert set(d["labeled"]["y_l"]) <= set(range(5)) and len(d["labeled"]["y_l"]) == np.sum(y_all < 5)
    assert set(d["eval_y"]) <= set(range(5, 10)) and len(d["eval_y"]) == np.sum(y_all >= 5)
    assert d["eval_test_mask"].sum() == np.sum(fake.y_test >= 5)  # the test-set images among them
    assert d["unlabeled"]["x_u"].shape == (50, 784) and d["corners"].shape == (10, 10)


@pytest.mark.parametrize("task", ["untapped", "m2_100"])
def test_grey_pixels_are_the_unrounded_images_in_unit_interval(task):
    fake = FakeMnist()
    binary = D.build_data(small_cfg(task), mnist=fake)
    grey = D.build_data(small_cfg(task, pixels="grey"), mnist=fake)
    for k, sub in (("labeled", "x_l"), ("unlabeled", "x_u")):
        g = grey[k][sub]
        assert g.dtype == np.float32 and g.min() >= 0.0 and g.max() <= 1.0
        assert np.mean((g > 0) & (g < 1)) > 0.5  # not binary
        np.testing.assert_array_equal(binarize_round(g), binary[k][sub])  # same images, same order
    np.testing.assert_array_equal(binarize_round(grey["eval_x"]), binary["eval_x"])
    np.testing.assert_array_equal(grey["labeled"]["y_l"], binary["labeled"]["y_l"])
    src = np.concatenate([fake.x_train, fake.x_test]) if task == "untapped" else fake.x_train
    np.testing.assert_allclose(np.sort(grey["labeled"]["x_l"].ravel())[-5:], np.sort(to_unit_float(src).ravel())[-5:])


def test_stream_iterator_yields_three_streams_and_resumes():
    data = {
        "labeled": {"x_l": np.zeros((50, 784), np.float32), "y_l": np.arange(50, dtype=np.int32) % 5},
        "unlabeled": {"x_u": np.ones((40, 784), np.float32)},
        "corners": m.corner_labels(),
    }
    dc = DataConfig(batch_labeled=8, batch_unlabeled=8, batch_unfeatured=15)
    make = lambda: D.StreamIterator(data, dc, with_unfeatured=True)
    it = make()
    b = next(it)
    assert set(b) == {"x_l", "y_l", "x_u", "y_u"} and b["y_u"].shape == (15, 10)
    np.testing.assert_allclose(b["y_u"][10], m.corner_labels()[0])
    state = it.get_state()
    nxt = next(it)
    again = make()
    again.set_state(json.loads(json.dumps(state)))  # what a checkpoint stores
    for k, v in next(again).items():
        np.testing.assert_array_equal(v, nxt[k])
    no_reverse = next(D.StreamIterator(data, dc, with_unfeatured=False))
    assert set(no_reverse) == {"x_l", "y_l", "x_u"}


def test_fixed_unfeatured_set_repeats_the_same_ten_pairs_across_steps_and_batches():
    dc = small_cfg(unfeatured_z="fixed", batch_unfeatured=25)
    d = D.build_data(dc, mnist=FakeMnist())
    it = D.StreamIterator(d, dc, with_unfeatured=True, model_cfg=WIDE)
    batches = [next(it) for _ in range(4)]
    z0 = D.fixed_unfeatured_z(dc, WIDE)
    assert z0.shape == (10, 2) and z0.dtype == np.float32
    assert np.all(np.abs(z0) < 1.5) and len(np.unique(z0)) == 20  # the reverse box, 10 distinct z's
    for b in batches:
        assert b["z_u"].shape == (25, 2) and b["y_u"].shape == (25, 10)
        for i in range(25):  # row i pairs corner i mod 10 with z i mod 10, in every batch
            np.testing.assert_array_equal(b["z_u"][i], z0[i % 10])
            np.testing.assert_array_equal(b["y_u"][i], m.corner_labels()[i % 10])
    again = D.StreamIterator(d, dc, with_unfeatured=True, model_cfg=WIDE)
    again.set_state(it.get_state())
    np.testing.assert_array_equal(next(again)["z_u"], batches[0]["z_u"])
    assert not np.allclose(D.fixed_unfeatured_z(dataclasses.replace(dc, data_seed=1), WIDE), z0)
    fresh = next(D.StreamIterator(d, dataclasses.replace(dc, unfeatured_z="fresh"), with_unfeatured=True))
    assert "z_u" not in fresh
    for k in ("x_l", "y_l", "x_u"):  # the fixed set leaves the other streams as they were
        np.testing.assert_array_equal(fresh[k], batches[0][k])
    zr = D.fixed_unfeatured_z(dc, m.Config(z_space="real", latent_dim=5))
    assert zr.shape == (10, 5) and np.abs(zr).max() > 1.0  # N(0, I) draws
    with pytest.raises(ValueError, match="model_cfg"):
        D.StreamIterator(d, dc, with_unfeatured=True)


@pytest.mark.slow
def test_the_loss_takes_the_fixed_pairs_inside_the_wide_q_box():
    dc = small_cfg(unfeatured_z="fixed", batch_unfeatured=25)
    batch = next(D.StreamIterator(D.build_data(dc, mnist=FakeMnist()), dc, with_unfeatured=True, model_cfg=WIDE))
    small = dataclasses.replace(WIDE, hidden_y=(4,), hidden_z=(4,), hidden_x=(4,))
    out = m.make_loss_fn(small)(m.init(small, 0)[0], {}, batch, jax.random.key(1))
    assert np.isfinite(float(out.loss)) and np.isfinite(float(out.metrics["j_ru"]))


def test_per_seed_data_gives_each_seed_the_data_of_its_own_data_seed():
    fake = FakeMnist()
    dc = small_cfg(unfeatured_z="fixed", data_seed=3, per_seed=True)
    seeds = (0, 2, 5)
    per, cfgs = D.build_seed_data(dc, seeds, mnist=fake)
    assert [D.seed_data_seed(dc, s) for s in seeds] == [c.data_seed for c in cfgs] == [3, 5, 8]
    for d, s in zip(per, seeds):  # what the seed would get alone with data seed 3 + s
        alone = D.build_data(dataclasses.replace(dc, data_seed=3 + s, per_seed=False), mnist=fake)
        assert tree_hash(d) == tree_hash(alone)
        assert d["labeled"] is per[0]["labeled"] and d["eval_x"] is per[0]["eval_x"]  # shared, not copied
    shared, shared_cfgs = D.build_seed_data(dataclasses.replace(dc, per_seed=False), seeds, mnist=fake)
    assert all(d is shared[0] for d in shared) and {c.data_seed for c in shared_cfgs} == {3}
    for bad in ((), (1, 1)):
        with pytest.raises(ValueError, match="seeds.*non-empty and distinct"):
            D.build_seed_data(dc, bad, mnist=fake)
    # stacked: seed i's slice is seed i's own stream (batch order and fixed z's included)
    it, streams = D.train_iterator(per, cfgs, WIDE, per_seed=True)
    assert isinstance(it, StackedIterator) and len(streams) == 3
    first = next(it)
    assert first["x_l"].shape == (3, 8, 784) and first["z_u"].shape == (3, 15, 2)
    for i, (d, c) in enumerate(zip(per, cfgs)):
        own = next(D.StreamIterator(d, c, with_unfeatured=True, model_cfg=WIDE))
        for k in own:
            np.testing.assert_array_equal(first[k][i], own[k])
    assert not np.array_equal(first["z_u"][0], first["z_u"][1])
    m2_it, _ = D.train_iterator(shared, shared_cfgs, dataclasses.replace(WIDE, reverse="none"), per_seed=False)
    assert set(next(m2_it)) == {"x_l", "y_l", "x_u"}  # the M2 baseline has no unfeatured stream


def host_and_index_iterators(per_seed):
    dc = small_cfg(unfeatured_z="fixed", per_seed=per_seed)
    datas, cfgs = D.build_seed_data(dc, (1, 2), mnist=FakeMnist())
    host, _ = D.train_iterator(datas, cfgs, WIDE, per_seed=per_seed)
    index, _ = D.train_iterator(datas, cfgs, WIDE, per_seed=per_seed, on_device=True)
    return D.device_tables(datas, per_seed), host, index


@pytest.mark.parametrize("per_seed", [False, True])
def test_device_data_sends_indices_that_gather_the_same_batches(per_seed):
    tables, host, idx = host_and_index_iterators(per_seed)
    assert tables["x_u"].shape == ((2,) if per_seed else ()) + (50, 784)
    for _ in range(3):
        hb, ib = next(host), next(idx)
        assert set(ib) == {"i_l", "i_u", "y_u", "z_u"} and ib["i_l"].dtype == np.int32
        assert ib["i_l"].nbytes * 784 == hb["x_l"].nbytes  # indices instead of rows
        gathered = jax.jit(D.gather_rows)(ib, tables)
        assert set(gathered) == set(hb)
        for k in hb:  # the very same rows, bit for bit
            np.testing.assert_array_equal(np.asarray(gathered[k]), hb[k])
    with pytest.raises(ValueError, match="datas.*got none"):
        D.device_tables([], per_seed=True)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(pixels="gray"), r"data\.pixels.*binary.*grey"),
        (dict(unfeatured_z="once"), r"data\.unfeatured_z.*fresh.*fixed"),
        (dict(task="cifar"), r"data\.task.*untapped.*m2_100"),
        (dict(task="m2_100", per_seed=True), r"per_seed=True.*untapped"),
        (dict(batch_labeled=0), r"data\.batch_labeled.*positive int"),
        (dict(batch_unfeatured=-1), r"data\.batch_unfeatured.*>= 0"),
    ],
)
def test_bad_data_option_raises_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        DataConfig(**kw)
    cfg = ExperimentConfig()
    with pytest.raises(ValueError, match=match):
        _cli.apply_overrides(cfg, [f"data.{k}={v}" for k, v in kw.items()])


def test_per_seed_must_be_a_bool():  # the command line parses "1" as True; a config file could pass 1
    with pytest.raises(ValueError, match=r"data\.per_seed.*True or False"):
        DataConfig(per_seed=1)
