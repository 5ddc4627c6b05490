"""experiments/stcvae: the sub-grid data, the report's claim checks, and the sweep end to end (smoke config)."""

import json
import os

import numpy as np
import pytest

from experiments.stcvae import data as sdata
from experiments.stcvae import report
from jaxvae.data import dsprites


def test_sub_grid_is_a_factorial_grid_in_dsprites_order():
    cfg = sdata.DspritesData(orientation_stride=8, position_stride=8, downsample=4)
    assert cfg.factor_sizes == (1, 3, 6, 5, 4, 4)
    classes = sdata.sub_grid_classes(cfg)
    assert classes.shape == (3 * 6 * 5 * 4 * 4, 6)
    # posY fastest, as in the public file; rows_of inverts the order
    np.testing.assert_array_equal(classes[:5, 5], [0, 1, 2, 3, 0])
    np.testing.assert_array_equal(sdata.rows_of(cfg, classes), np.arange(len(classes)))
    # the full-grid indices they stand for keep the public order
    full = dsprites.classes_to_index(classes * np.asarray(cfg.strides))
    assert np.all(np.diff(full) > 0)


def test_downsampled_images_are_binary_block_means_and_split_is_disjoint():
    cfg = sdata.DspritesData(orientation_stride=20, position_stride=16, downsample=2, test_fraction=0.25)
    d = sdata.load(cfg)
    assert d.images.shape == (len(d.classes), 32, 32, 1) and d.images.dtype == np.uint8
    assert set(np.unique(d.images)) <= {0, 1}
    full = dsprites.render_dsprites(dsprites.classes_to_index(d.classes[:4] * np.asarray(cfg.strides)))
    want = full.reshape(4, 32, 2, 32, 2).mean(axis=(2, 4)) >= 0.5
    np.testing.assert_array_equal(d.images[:4, ..., 0], want)
    assert len(np.intersect1d(d.train, d.test)) == 0 and len(d.train) + len(d.test) == len(d.classes)
    assert len(d.test) == round(0.25 * len(d.classes))


def test_data_config_errors():
    with pytest.raises(ValueError, match="orientation_stride"):
        sdata.DspritesData(orientation_stride=3)
    with pytest.raises(ValueError, match="test_fraction"):
        sdata.DspritesData(test_fraction=0.9)


def test_v_shape_check():
    assert report.v_shape([4, 2, 1, 2, 8], kind="min", min_step=0.5)["v_shaped"]
    assert not report.v_shape([1, 2, 4, 8], kind="min", min_step=0.5)["v_shaped"]  # monotone
    assert not report.v_shape([4, 1, 1.2], se=[0.1, 0.1, 0.5], kind="min")["v_shaped"]  # right end within noise
    assert report.v_shape([1.0, 3.0, 1.0], se=[0.1, 0.1, 0.1], kind="max")["v_shaped"]


def _cells(gm):
    return [
        {"beta": b, "group_size": s, "seed": seed, "group_mig": v, "test": {"elbo": -v}, "train": {"elbo": -v}}
        for (b, s, seed), v in gm.items()
    ]


def test_group_mig_comparison_is_paired_by_seed():
    gm = {(1.0, 1, k): 0.1 * k for k in range(3)}
    gm.update({(1.0, 2, k): 0.1 * k + 0.05 + 0.001 * k for k in range(3)})  # always ~0.05 above, same seed
    gm.update({(1.0, 4, k): 0.1 * (2 - k) for k in range(3)})  # no consistent difference
    out = report.group_mig_vs_s1(_cells(gm))
    assert out["beta=1,s=2"]["higher"] and out["beta=1,s=2"]["mean_diff"] == pytest.approx(0.051)
    assert not out["beta=1,s=4"]["higher"]


@pytest.mark.slow
def test_sweep_smoke_end_to_end_and_report(tmp_path):
    from experiments.stcvae import main as stmain
    from experiments.stcvae import sweep

    work = str(tmp_path / "sweep")
    res = sweep.main(["--config", "experiments/stcvae/configs/smoke.py", "--workdir", work])
    assert len(res["cells"]) == 4 and {c["group_size"] for c in res["cells"]} == {1, 2}
    for c in res["cells"]:
        for split in ("train", "test"):
            assert np.isfinite(c[split]["elbo"]) and c[split]["elbo"] < 0
            assert c[split]["tc"] == pytest.approx(c[split]["tc_between"] + c[split]["tc_within"], abs=1e-3)
        for k in ("mig", "group_mig", "sap", "factor_vae"):
            assert np.isfinite(c[k])
        if c["group_size"] == 1:
            assert c["group_mig"] == c["mig"] and c["train"]["tc_within"] == 0
    assert res["provenance"]["seeds"] == [0]
    # a re-run reuses the finished group sizes
    again = sweep.main(["--config", "experiments/stcvae/configs/smoke.py", "--workdir", work])
    assert [c["test"]["elbo"] for c in again["cells"]] == [c["test"]["elbo"] for c in res["cells"]]
    out = str(tmp_path / "out")
    summary = report.main(["--sweep", os.path.join(work, "sweep.json"), "--out", out, "--tag", "smoke"])
    for name in ("table_smoke.md", "elbo_surface_smoke.png", "optimal_elbo_smoke.png", "traversals_smoke.png"):
        assert os.path.exists(os.path.join(out, name))
    with open(os.path.join(out, "summary_smoke.json")) as f:
        assert json.load(f)["trajectories"] == json.loads(json.dumps(summary["trajectories"]))
    one = stmain.main(
        [
            "--config",
            "experiments/stcvae/configs/smoke.py",
            "--workdir",
            str(tmp_path / "one"),
            "--set",
            "model.group_size=2",
        ]
    )
    assert len(one["cells"]) == 1 and one["cells"][0]["group_size"] == 2
