"""Every baseline-VAE config equals, field by field, the config it was before its sections were shared."""

import pytest

from tests.experiments.config_snapshots import new_config, old_configs

OLD = old_configs("vae")


def as_old_layout(new: dict) -> dict:
    """The old sections: ``data`` (the test binarization seed was ``static_seed``; the static training
    binarization used ``static_seed + 1``) and ``eval`` (the IW settings and ``num_images``)."""
    data, iw = new["data"], new["iw"]
    assert data["static_seed"] == data["test_seed"] + 1  # the old rule, kept by every config
    model = dict(new["model"])
    assert model.pop("kl_warmup_steps") == 0  # a field added later; 0 is the old behaviour
    return {
        "model": model,
        "optim": new["optim"],
        "train": _without_skip_limit(new["train"]),
        "data": {
            "binarization": data["binarization"],
            "static_seed": data["test_seed"],
            "train_examples": data["train_examples"],
            "test_examples": data["test_examples"],
        },
        "eval": {
            "iw_samples": iw["samples"],
            "iw_examples": iw["examples"],
            "iw_sample_chunk": iw["sample_chunk"],
            "iw_batch_size": iw["batch_size"],
            "num_images": new["num_images"],
        },
    }


@pytest.mark.parametrize("path", sorted(OLD))
def test_config_unchanged_by_the_refactor(path):
    assert len(OLD) == 3
    assert as_old_layout(new_config(path)) == OLD[path]


def _without_skip_limit(train: dict) -> dict:
    """``max_consecutive_skips`` came later (stop a run that only skips steps); the old code had no limit."""
    train = dict(train)
    assert train.pop("max_consecutive_skips") > 0
    return train
