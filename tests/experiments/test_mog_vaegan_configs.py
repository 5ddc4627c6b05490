"""Rivera experiment configs: the four CPU-scale models differ only where the comparison says, the CelebA-HQ
config holds the paper's settings and trains on random images at a small size (slow), the summary's claim
logic."""

from __future__ import annotations

import dataclasses
import importlib
import json

import numpy as np
import pytest

from experiments.mog_vaegan import summarize
from jaxvae.models import mog_vaegan

CPU = ("baseline", "population", "vaegan", "vaegan_moment")


def load(name):
    return importlib.import_module(f"experiments.mog_vaegan.configs.{name}").get_config()


def test_the_four_models_differ_only_in_kl_regularizer_and_adversary():
    cfgs = {n: load(n) for n in CPU}
    expected = {
        "baseline": ("per_sample", 0.0, False),
        "population": ("population", 0.1, False),
        "vaegan": ("population", 0.1, True),
        "vaegan_moment": ("population_moment", 0.1, True),
    }
    for n, c in cfgs.items():
        assert (c.model.kl, c.model.var_reg_weight, c.model.adversarial) == expected[n]
        strip = dataclasses.replace(c.model, kl="population", var_reg_weight=0.1, adversarial=True)
        assert strip == dataclasses.replace(cfgs["vaegan"].model)  # everything else shared
        assert c.train == cfgs["vaegan"].train and c.data == cfgs["vaegan"].data and c.eval == cfgs["vaegan"].eval
        assert c.seeds == (0, 1, 2) and c.data.source == "mnist32" and c.model.x_shape == (32, 32, 1)
        assert c.model.rec_weight == 5000.0 and c.model.adv_weight == 100.0 and c.model.b1 == 0.5


def test_celeba_config_is_the_papers_setting():
    c = load("celeba_hq_256")
    assert c.model == mog_vaegan.Config()
    assert c.model.x_shape == (256, 256, 3) and c.model.latent_dim == 512 and c.model.learning_rate == 1e-4
    assert c.train.batch_size == 20 and c.data.source == "image_folder" and c.data.split_seed == 1967
    assert c.mode == "simultaneous"


def _fake_runs(fid_a, fid_c, psnr_a=20.0, psnr_c=19.0):
    def r(fid, psnr, s):
        return {m: 1.0 for m in summarize.METRICS} | {"mnist_fid": fid, "test_psnr": psnr, "seed": s}

    return {
        "a_baseline": {s: r(f, psnr_a, s) for s, f in enumerate(fid_a)},
        "c_vaegan": {s: r(f, psnr_c, s) for s, f in enumerate(fid_c)},
    }


def test_claim_needs_lower_fid_beyond_two_standard_errors_and_psnr_within_ten_percent():
    ok = summarize.summarize(_fake_runs([30, 32, 31], [20, 21, 21]))["claim"]
    assert ok["holds"] and ok["seeds"] == 3
    noisy = summarize.summarize(_fake_runs([30, 32, 31], [20, 40, 21]))["claim"]  # mean lower, not beyond 2 SE
    assert not noisy["fid_lower_beyond_2se"] and not noisy["holds"]
    blurry = summarize.summarize(_fake_runs([30, 32, 31], [20, 21, 21], psnr_c=17.0))["claim"]
    assert blurry["fid_lower_beyond_2se"] and not blurry["psnr_within_10_percent"] and not blurry["holds"]
    two = summarize.summarize(_fake_runs([30, 32], [20, 21]))["claim"]
    assert not two["holds"]  # fewer than 3 seeds


@pytest.mark.slow
def test_celeba_config_trains_on_random_images_at_small_size(tmp_path):
    """The paper's configuration with the image size and widths shrunk (64x64x3, six stages of width 8):
    two adversarial steps, the evaluation, results.json; and the benchmark builder's step runs."""
    from experiments.mog_vaegan import main

    c = load("celeba_hq_256")
    small = dataclasses.replace(
        c.model,
        x_shape=(64, 64, 3),
        latent_dim=16,
        enc_widths=(8,) * 7,
        dec_widths=(8,) * 6 + (3,),
        disc_features=(8, 8, 8, 4, 4, 1),
    )
    cfg = dataclasses.replace(
        c,
        model=small,
        data=dataclasses.replace(c.data, source="random", train_examples=16, test_examples=8),
        train=dataclasses.replace(
            c.train, num_steps=2, batch_size=4, eval_every=2, checkpoint_every=1, eval_batch_size=4, progress=False
        ),
        eval=dataclasses.replace(c.eval, posterior_examples=8, aggregate_kl_samples=16),
        num_images=4,
    )
    out = main.run(cfg, str(tmp_path))
    (r,) = out["runs"]
    assert r["step"] == 2 and r["skipped_steps"] == 0 and r["skipped_per_player"] == {"vae": 0, "disc": 0}
    assert np.isfinite(r["test_mae"]) and np.isfinite(r["aggregate_kl_mc"]) and "mnist_fid" not in r
    assert json.load(open(tmp_path / "seed_0" / "results.json"))["seed"] == 0
    step, state, batch = main.make_benchmark_step(small, 4)
    state, m = step(state, batch)
    assert np.isfinite(float(m["gen_loss"])) and np.isfinite(float(m["disc_loss"])) and int(state.step) == 1


def test_traversal_latents_move_one_unit_per_row_most_varying_unit_first():
    from experiments.mog_vaegan.evaluate import TRAVERSAL_RANGE, traversal_latents

    rng = np.random.default_rng(0)
    scales = np.array([0.1, 3.0, 1.0, 0.01, 2.0])
    loc = rng.normal(size=(200, 5)) * scales
    z = traversal_latents(loc)
    assert z.shape == (5, 5, 5)
    order = np.argsort(-loc.var(axis=0))
    assert list(order[:3]) == [1, 4, 2]
    for k, unit in enumerate(order):
        moved = z[k] - loc[0]
        others = np.delete(moved, unit, axis=1)
        np.testing.assert_allclose(others, 0.0, atol=1e-6)
        np.testing.assert_allclose(moved[:, unit], np.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, 5), atol=1e-6)
    assert traversal_latents(rng.normal(size=(3, 40))).shape == (16, 16, 40)  # at most 16 rows
    with pytest.raises(ValueError, match="loc"):
        traversal_latents(np.zeros(4))


def test_interpolation_latents_join_consecutive_codes():
    from experiments.mog_vaegan.evaluate import interpolation_latents

    loc = np.arange(30, dtype=np.float32).reshape(10, 3)
    z = interpolation_latents(loc)
    assert z.shape == (5, 5, 3)
    for p in range(5):
        np.testing.assert_allclose(z[p, 0], loc[2 * p], atol=1e-6)
        np.testing.assert_allclose(z[p, -1], loc[2 * p + 1], atol=1e-6)
        np.testing.assert_allclose(z[p, 2], (loc[2 * p] + loc[2 * p + 1]) / 2, atol=1e-5)
    assert interpolation_latents(loc[:2]).shape == (1, 2, 3)
    assert interpolation_latents(np.zeros((40, 3))).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="N >= 2"):
        interpolation_latents(loc[:1])


@pytest.mark.slow
def test_image_fn_gives_traversal_and_interpolation_grids_one_row_per_unit_or_pair():
    """The evaluation's images of the CPU-scale model: the decoded traversals tile into one unit per row,
    the interpolations into one pair per row, with the test images' reconstructions at the row ends."""
    import jax

    from experiments.mog_vaegan import evaluate, main
    from jaxvae.train.writers import make_grid

    c = load("vaegan")
    small = dataclasses.replace(
        c.model, latent_dim=6, enc_widths=(4,) * 4, dec_widths=(4,) * 4, disc_features=(4, 4, 1)
    )
    cfg = dataclasses.replace(c, model=small, num_images=4)
    state = main.create_state(cfg.model, 0)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 1)).astype(np.float32)
    out = evaluate.image_fn(cfg, x)(state, jax.random.key(1))
    assert set(out) == {"samples", "reconstructions", "traversals", "interpolations"}
    assert out["traversals"].shape == (6 * 6, 32, 32, 1) and out["interpolations"].shape == (4 * 4, 32, 32, 1)
    for v in out.values():
        assert v.min() >= 0.0 and v.max() <= 1.0
    assert make_grid(out["traversals"]).shape[:2] == (6 * 34 + 2, 6 * 34 + 2)
    assert make_grid(out["interpolations"]).shape[:2] == (4 * 34 + 2, 4 * 34 + 2)
    recon = out["reconstructions"][1::2]  # (test image, reconstruction) pairs
    ends = out["interpolations"].reshape(4, 4, 32, 32, 1)
    np.testing.assert_allclose(ends[:, 0], recon[0::2], atol=1e-5)
    np.testing.assert_allclose(ends[:, -1], recon[1::2], atol=1e-5)
    row = out["traversals"].reshape(6, 6, 32, 32, 1)[0]
    assert np.abs(row[0] - row[-1]).max() > 0  # moving the unit changes the decoded image


@pytest.mark.slow  # MNIST features of 3 x 500 images (~20 s)
def test_reference_fid_orders_real_below_blank(tmp_path):
    """The reference points put real training images far below blank images against the test images."""
    from experiments.mog_vaegan import reference_fid

    out = reference_fid.main(["--out", str(tmp_path), "--num-images", "500"])
    assert 0.0 <= out["mnist_fid_train500_vs_test"] < 0.2 * out["mnist_fid_blank_vs_test"]
    assert json.load(open(tmp_path / "mnist_fid_reference.json"))["test_images"] == 500
    with pytest.raises(ValueError, match="--num-images"):
        reference_fid.main(["--out", str(tmp_path), "--num-images", "1"])
