"""Results files written before the model's config was renamed (``results/confirm_h200/*.json``): their
``config`` section in today's names, so they compare with today's configs.

The model's fields were renamed when ``jaxvae.models.inverted_ssvae`` moved onto the model template:
``z_dim -> latent_dim``, ``x_dim -> x_shape = (x_dim,)``, ``z_scale_param`` -> ``scale_param`` (with
``min_scale = 1e-5``: ``'softplus_std'`` is ``'softplus'``), and the authors' code's switches moved into
``code`` (:class:`jaxvae.models.inverted_ssvae.AuthorsCode`); the Concrete temperature schedule moved from
``run.tau_decay_rate``/``run.tau_floor`` to ``model.temperature_decay_rate``/``model.temperature_floor``
(the loss follows it with the step). The other sections kept their names.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

#: model fields that moved into ``model.code`` (same names there)
CODE_FIELDS = (
    "weight_fl",
    "weight_fu",
    "weight_ru",
    "fd_loss",
    "rd_input",
    "init_std",
    "reverse_z_low",
    "reverse_z_high",
)
#: old ``z_scale_param`` -> new ``scale_param`` (``min_scale`` was 1e-5 for both, as it is by default now)
SCALE_PARAMS = {"log_var": "log_var", "softplus_std": "softplus"}
MIN_SCALE = 1e-5


def is_legacy(config: Mapping[str, Any]) -> bool:
    """Whether a config dict uses the old model names (``z_dim``, ``x_dim``, ...)."""
    return "z_dim" in config.get("model", {})


def upgrade(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config dict in today's names (a copy; a dict already in today's names comes back unchanged).

    Raises:
      ValueError: for an old ``z_scale_param`` that has no counterpart today.
    """
    out = copy.deepcopy(dict(config))
    if not is_legacy(out):
        return out
    model = dict(out["model"])
    model["latent_dim"] = model.pop("z_dim")
    model["x_shape"] = [model.pop("x_dim")]
    scale = model.pop("z_scale_param", "log_var")
    if scale not in SCALE_PARAMS:
        raise ValueError(f"model.z_scale_param {scale!r} has no counterpart; expected one of {sorted(SCALE_PARAMS)}.")
    model["scale_param"], model["min_scale"] = SCALE_PARAMS[scale], MIN_SCALE
    model["code"] = {k: model.pop(k) for k in CODE_FIELDS if k in model}
    run = dict(out.get("run", {}))
    model["temperature_decay_rate"] = run.pop("tau_decay_rate", 1.0)
    model["temperature_floor"] = run.pop("tau_floor", 0.5)
    out["model"], out["run"] = model, run
    return out
