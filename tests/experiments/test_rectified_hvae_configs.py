"""Every rectified-hierarchy config equals, field by field, the config it was before the shared sections."""

import pytest

from tests.experiments.config_snapshots import new_config, old_configs

OLD = old_configs("rectified_hvae")


def as_old_layout(new: dict) -> dict:
    """The old names: ``optimizer`` (now ``optim``); ``data.train_size``/``test_size`` (now
    ``train_examples``/``test_examples``, None meaning all); ``data.test_binarization_seed`` (now
    ``test_seed``); ``eval`` (now ``iw`` and ``layers``); ``model.x_dim`` (now ``x_shape``) and the
    baseline's ``beta`` moved into the model config. ``data.static_seed`` seeds a static training
    binarization only: every config binarizes dynamically, so it is left out of the comparison."""
    data, iw, layers = new["data"], new["iw"], new["layers"]
    assert data["binarization"] == "dynamic" and iw["batch_size"] is None
    model = {k: v for k, v in new["model"].items() if k not in ("x_shape", "beta")}
    assert new["model"]["beta"] == 1.0
    model["x_dim"] = new["model"]["x_shape"][0]
    return {
        "model_kind": new["model_kind"],
        "model": model,
        "vae": {k: v for k, v in new["vae"].items() if k != "kl_warmup_steps"},
        "optimizer": new["optim"],
        "train": _without_skip_limit(new["train"]),
        "data": {
            "binarization": data["binarization"],
            "train_size": data["train_examples"] or 60_000,
            "test_size": data["test_examples"] or 10_000,
            "test_binarization_seed": data["test_seed"],
        },
        "eval": {
            "iw_samples": iw["samples"],
            "iw_examples": iw["examples"],
            "iw_sample_chunk": iw["sample_chunk"],
            "au_examples": layers["examples"],
            "au_samples": layers["samples"],
            "au_threshold": layers["threshold"],
            "figure_columns": layers["figure_columns"],
        },
        "epochs": new["epochs"],
    }


@pytest.mark.parametrize("path", sorted(OLD))
def test_config_unchanged_by_the_refactor(path):
    assert len(OLD) == 5
    old = dict(OLD[path])
    old["data"] = {k: v for k, v in old["data"].items() if k != "static_seed"}
    assert as_old_layout(new_config(path)) == old


def _without_skip_limit(train: dict) -> dict:
    """``max_consecutive_skips`` came later (stop a run that only skips steps); the old code had no limit."""
    train = dict(train)
    assert train.pop("max_consecutive_skips") > 0
    return train
