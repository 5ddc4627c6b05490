"""The configs of every experiment as they were before their derivation chains were flattened.

``data/configs_before_flattening.json`` holds ``config_to_dict(get_config())`` of every config module,
loaded with the code of commit a94084b (before the refactor that renamed fields and flattened the
chains). A test per experiment maps each new config back to the old layout and asserts equality
field by field, so flattening changed no setting.
"""

from __future__ import annotations

import json
import os

from experiments import _cli
from experiments._common import config_to_dict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SNAPSHOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "configs_before_flattening.json")


def old_configs(prefix: str) -> dict[str, dict]:
    """``{path: old config dict}`` of the config modules under ``experiments/<prefix>/configs``."""
    with open(SNAPSHOT, encoding="utf-8") as f:
        snap = json.load(f)
    return {k: v for k, v in snap.items() if k.startswith(f"experiments/{prefix}/configs/")}


def new_config(path: str) -> dict:
    """The config module at ``path`` (relative to the repository) as a dict."""
    return config_to_dict(_cli.load_config(os.path.join(REPO, path)))
