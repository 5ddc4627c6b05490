"""The flattened Gemp configs equal the configs as they were before flattening, field by field.

``tests/experiments/data/configs_before_flattening.json`` holds every config as the old code loaded it (its
four-deep ``dataclasses.replace`` chain, the old model field names). Each new config, converted to a dict,
is mapped to the old names through :data:`RENAMED` (new -> old) and compared leaf by leaf: same set of
fields, same values.
"""

from __future__ import annotations

import ast
import json
import os

import pytest

from experiments import _cli
from experiments._common import config_to_dict
from experiments.inverted_ssvae.analysis import legacy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(ROOT, "experiments", "inverted_ssvae", "configs")
with open(os.path.join(os.path.dirname(__file__), "data", "configs_before_flattening.json")) as f:
    BEFORE = {k: v for k, v in json.load(f).items() if k.startswith("experiments/inverted_ssvae/")}

# new dotted name -> old dotted name; the authors' code's switches moved from model.* to model.code.*
RENAMED = {
    "model.latent_dim": "model.z_dim",
    "model.x_shape": "model.x_dim",
    "model.scale_param": "model.z_scale_param",
    **{f"model.code.{k}": f"model.{k}" for k in legacy.CODE_FIELDS},
    "model.temperature_decay_rate": "run.tau_decay_rate",  # the loss follows the schedule with the step
    "model.temperature_floor": "run.tau_floor",
}
# new fields without an old counterpart, and the value the old code used for them
NEW_ONLY = {"model.min_scale": 1e-5}


def _old_value(new_name: str, value, new: dict):
    """The old value of a renamed field whose representation changed."""
    if new_name == "model.x_shape":
        assert len(value) == 1, value
        return value[0]  # (784,) -> 784
    if new_name == "model.scale_param":
        return {"log_var": "log_var", "softplus": "softplus_std"}[value]
    return value


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_the_old_configs_are_all_there():
    assert len(BEFORE) == 9
    assert sorted(os.path.basename(k) for k in BEFORE) == sorted(
        f for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and f != "__init__.py"
    )


@pytest.mark.parametrize("path", sorted(BEFORE))
def test_every_new_config_equals_its_old_dict_field_by_field(path):
    new = _flatten(config_to_dict(_cli.load_config(os.path.join(ROOT, path))))
    for name, value in NEW_ONLY.items():
        assert new.pop(name) == value, name
    mapped = {RENAMED.get(k, k): _old_value(k, v, new) for k, v in new.items()}
    old = _flatten(BEFORE[path])
    assert sorted(mapped) == sorted(old), f"fields differ: {set(mapped) ^ set(old)}"
    for k in sorted(old):
        assert mapped[k] == old[k], f"{path}: {k} is {mapped[k]!r}, was {old[k]!r}"


@pytest.mark.parametrize("path", sorted(BEFORE))
def test_legacy_upgrade_turns_each_old_config_into_the_new_one(path):
    """analysis/legacy.py reads results files written with the old names (results/confirm_h200)."""
    new = config_to_dict(_cli.load_config(os.path.join(ROOT, path)))
    assert legacy.is_legacy(BEFORE[path]) and not legacy.is_legacy(new)
    assert legacy.upgrade(BEFORE[path]) == new
    assert legacy.upgrade(new) == new


def test_legacy_upgrade_refuses_an_unknown_scale_parametrisation():
    old = json.loads(json.dumps(next(iter(BEFORE.values()))))
    old["model"]["z_scale_param"] = "exp_std"
    with pytest.raises(ValueError, match="z_scale_param 'exp_std'"):
        legacy.upgrade(old)


def _config_imports(name: str) -> list[str]:
    with open(os.path.join(CONFIG_DIR, name)) as f:
        tree = ast.parse(f.read())
    return [
        node.module.rsplit(".", 1)[1] + ".py"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.startswith("experiments.inverted_ssvae.configs.")
    ]


@pytest.mark.parametrize("name", sorted(os.path.basename(k) for k in BEFORE))
def test_configs_derive_at_most_one_level(name):
    for base in _config_imports(name):
        assert _config_imports(base) == [], f"{name} derives from {base}, which derives from another config"
