"""The import graph of ARCHITECTURE.md section 2, checked statically (ast) on every source file.

Rules (``jaxvae.typing`` is allowed everywhere; ``jaxvae/__init__.py`` is the package root and may
re-export anything but experiments):

* ``distributions``: no other jaxvae subpackage; no flax/optax/orbax/tensorflow/torch (jax + numpy maths).
* ``objectives``: only ``distributions``; no flax/orbax/tensorflow/torch.
* ``nets``: only ``distributions``.
* ``models``: ``distributions``, ``objectives``, ``nets``, ``metrics`` and the engine contract
  ``jaxvae.train.state`` (``LossOutput``), nothing else of ``train``; never ``data``.
* ``metrics`` and ``train``: never ``models``, ``nets`` or ``experiments``.
* ``data``: no model code (``models``, ``nets``, ``train``, ``objectives``, ``metrics``), no flax.
* nothing under ``jaxvae/`` imports ``experiments``.
* ``benchmarks/``: public API only, no private module or name (``jaxvae.x._y``, ``from jaxvae.x import _y``).

Imports anywhere in a file count (also inside functions and ``if TYPE_CHECKING:``), relative
imports are resolved, and ``importlib.import_module("...")`` / ``__import__("...")`` with a literal
string are treated as imports.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("jaxvae", "experiments", "benchmarks")
SUBPACKAGES = ("distributions", "objectives", "nets", "models", "metrics", "train", "data")
HEAVY_THIRD_PARTY = {"flax", "orbax", "tensorflow", "tensorflow_datasets", "torch"}

# subpackage -> jaxvae subpackages it may import (None: no restriction among jaxvae subpackages)
ALLOWED_JAXVAE = {
    "distributions": set(),
    "objectives": {"distributions"},
    "nets": {"distributions"},
    "models": {"distributions", "objectives", "nets", "metrics", "train.state"},
    "metrics": {"distributions", "objectives", "train", "data", "metrics"},
    "train": {"distributions", "objectives", "metrics", "data", "train"},
    "data": {"distributions", "data"},
}
FORBIDDEN_THIRD_PARTY = {
    "distributions": HEAVY_THIRD_PARTY | {"optax"},
    "objectives": HEAVY_THIRD_PARTY,
    "data": {"flax", "optax", "orbax", "torch"},
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve_relative(module: str | None, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([module] if module else []))


def imported_modules(tree: ast.AST, current: str, is_package: bool) -> list[tuple[int, str, tuple[str, ...]]]:
    """``(line, module, names)`` for every import; ``names`` are the ``from`` names (else ``()``)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name, ()) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve_relative(node.module, node.level, current, is_package)
            out.append((node.lineno, mod, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value, ()))
    return out


def _targets(module: str, names: tuple[str, ...], root: Path) -> list[str]:
    """Modules an import binds: ``from a.b import c`` binds ``a.b.c`` when that is a module, else ``a.b``."""
    if not names:
        return [module]
    base = root.joinpath(*module.split("."))
    out = []
    for n in names:
        sub = base / n
        is_module = sub.with_suffix(".py").is_file() or sub.is_dir() or (module == "jaxvae" and n in SUBPACKAGES)
        out.append(f"{module}.{n}" if is_module else module)
    return out


def _is_private(dotted: str) -> bool:
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in dotted.split(".")[1:])


def check_file(path: Path, root: Path) -> list[str]:
    """Layering violations of one file, each ``"path:line: message"``."""
    rel = path.relative_to(root)
    current = module_name(path, root)
    top = rel.parts[0]
    sub = rel.parts[1] if top == "jaxvae" and len(rel.parts) > 2 else None  # None: jaxvae/__init__.py, typing.py
    with warnings.catch_warnings():  # e.g. invalid escape sequences: not this test's business
        warnings.simplefilter("ignore")
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    errors = []

    def err(line, msg):
        errors.append(f"{rel}:{line}: {msg}")

    for line, module, names in imported_modules(tree, current, path.name == "__init__.py"):
        head = module.split(".")[0]
        if top == "jaxvae":
            if head == "experiments":
                err(line, f"jaxvae/ must never import experiments (imports {module})")
            if sub in FORBIDDEN_THIRD_PARTY and head in FORBIDDEN_THIRD_PARTY[sub]:
                err(line, f"jaxvae.{sub} must not import {head}")
            if sub in ALLOWED_JAXVAE and head == "jaxvae":
                ok = ALLOWED_JAXVAE[sub]
                for target in dict.fromkeys(_targets(module, names, root)):
                    parts = target.split(".")
                    if len(parts) < 2 or parts[1] not in SUBPACKAGES or parts[1] == sub:
                        continue  # jaxvae itself, jaxvae.typing, jaxvae.__version__, own subpackage
                    if parts[1] in ok or ".".join(parts[1:3]) in ok:
                        continue
                    err(line, f"jaxvae.{sub} must not import {target} (allowed: {sorted(ok) or 'none'})")
        elif top == "benchmarks" and head == "jaxvae":
            for target in [module] + [f"{module}.{n}" for n in names]:
                if _is_private(target):
                    err(line, f"benchmarks must use the public API only (imports private {target})")
                    break
    return errors


def check_tree(root: Path) -> list[str]:
    errors = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")) if (root / top).is_dir() else ():
            if any(p.startswith(".") or p == "__pycache__" for p in path.relative_to(root).parts):
                continue
            errors.extend(check_file(path, root))
    return errors


def test_todays_tree_respects_the_layers():
    errors = check_tree(ROOT)
    assert not errors, "layering violations (ARCHITECTURE.md section 2):\n" + "\n".join(errors)


def test_the_checker_sees_the_real_package():
    """Guard against a checker that passes because it scans nothing."""
    files = [p for p in (ROOT / "jaxvae").rglob("*.py")]
    assert any(p.parts[-2] == "distributions" for p in files)
    tree = ast.parse((ROOT / "jaxvae" / "distributions" / "normal.py").read_text())
    mods = [m for _, m, _ in imported_modules(tree, "jaxvae.distributions.normal", False)]
    assert "jaxvae.distributions" in mods and "jax.numpy" in mods


def _write(root: Path, rel: str, source: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


VIOLATIONS = [
    ("jaxvae/distributions/bad.py", "import flax.linen as nn\n", "must not import flax"),
    ("jaxvae/distributions/bad.py", "from jaxvae.objectives import elbo\n", "must not import jaxvae.objectives"),
    ("jaxvae/distributions/bad.py", "from .. import nets\n", "must not import jaxvae.nets"),
    ("jaxvae/objectives/bad.py", "from jaxvae.nets.mlp import MLP\n", "must not import jaxvae.nets"),
    ("jaxvae/objectives/bad.py", "def f():\n    import jaxvae.models.vae\n", "must not import jaxvae.models"),
    ("jaxvae/objectives/bad.py", "from flax import linen\n", "must not import flax"),
    ("jaxvae/nets/bad.py", "from jaxvae.objectives.elbo import elbo\n", "must not import jaxvae.objectives"),
    ("jaxvae/models/bad.py", "from jaxvae.train.loop import fit\n", "must not import jaxvae.train.loop"),
    ("jaxvae/models/bad.py", "from jaxvae.data import loader\n", "must not import jaxvae.data"),
    ("jaxvae/metrics/bad.py", "from jaxvae.models import vae\n", "must not import jaxvae.models"),
    ("jaxvae/metrics/bad.py", "from ..nets import mlp\n", "must not import jaxvae.nets"),
    (
        "jaxvae/train/bad.py",
        "import importlib\nimportlib.import_module('jaxvae.models.vae')\n",
        "must not import jaxvae.models",
    ),
    ("jaxvae/train/bad.py", "from jaxvae import models\n", "must not import jaxvae.models"),
    ("jaxvae/data/bad.py", "from jaxvae.train.state import TrainState\n", "must not import jaxvae.train"),
    ("jaxvae/data/bad.py", "from jaxvae.objectives.elbo import elbo\n", "must not import jaxvae.objectives"),
    ("jaxvae/data/bad.py", "import flax\n", "must not import flax"),
    ("jaxvae/train/bad.py", "from experiments.vae import main\n", "never import experiments"),
    ("jaxvae/bad.py", "import experiments\n", "never import experiments"),
    ("benchmarks/bad.py", "from jaxvae.distributions import _checks\n", "private jaxvae.distributions._checks"),
    ("benchmarks/bad.py", "from jaxvae.distributions._checks import check_finite\n", "private"),
    ("benchmarks/bad.py", "from jaxvae.objectives.iwae import _check_log_w\n", "private"),
]


@pytest.mark.parametrize("rel, source, message", VIOLATIONS, ids=[f"{r}:{s.strip()[:40]}" for r, s, _ in VIOLATIONS])
def test_the_checker_catches_a_violation(tmp_path, rel, source, message):
    _write(tmp_path, rel, "'''synthetic module'''\n" + source)
    errors = check_tree(tmp_path)
    assert len(errors) == 1 and message in errors[0], errors
    assert errors[0].startswith(rel + ":"), errors


ALLOWED = [
    (
        "jaxvae/distributions/ok.py",
        "import jax\nimport numpy as np\nfrom jaxvae.distributions import _checks\n"
        "from jaxvae.typing import PRNGKey\nfrom .normal import Normal\n",
    ),
    (
        "jaxvae/objectives/ok.py",
        "from jaxvae.distributions.normal import Normal\nfrom jaxvae import typing\nfrom . import elbo\n",
    ),
    ("jaxvae/nets/ok.py", "import flax.linen as nn\nfrom jaxvae.distributions import normal\n"),
    (
        "jaxvae/models/ok.py",
        "import flax.linen as nn\nfrom jaxvae.train.state import LossOutput\nfrom jaxvae.nets import mlp\n"
        "from jaxvae.objectives import elbo\nfrom jaxvae.metrics.iw_nll import iw_log_likelihood\n",
    ),
    ("jaxvae/models/ok2.py", "from jaxvae.train import state\n"),  # with jaxvae/train/state.py present
    (
        "jaxvae/train/ok.py",
        "import optax, flax\nfrom jaxvae.data.loader import BatchIterator\nfrom jaxvae.train.state import TrainState\n",
    ),
    (
        "jaxvae/metrics/ok.py",
        "from jaxvae.objectives.iwae import chunked_logsumexp\nfrom jaxvae.data import epoch_batches\n",
    ),
    (
        "jaxvae/data/ok.py",
        "import numpy as np\nimport jax\nimport tensorflow_datasets as tfds\n"
        "from jaxvae.data.transforms import compose\n",
    ),
    ("jaxvae/__init__.py", "from jaxvae import models, train\n__version__ = '0'\n"),
    (
        "experiments/vae/main.py",
        "from jaxvae.models import vae\nfrom jaxvae.distributions import _checks\n"
        "from experiments.vae import configs\n",
    ),
    ("benchmarks/ok.py", "from jaxvae.models.vae import Config\nfrom jaxvae.train.loop import fit\nimport jaxvae\n"),
]


@pytest.mark.parametrize("rel, source", ALLOWED, ids=[r for r, _ in ALLOWED])
def test_the_checker_allows_what_the_layers_allow(tmp_path, rel, source):
    _write(tmp_path, rel, source)
    _write(tmp_path, "jaxvae/train/state.py", "from jaxvae.typing import PyTree\n")
    assert check_tree(tmp_path) == []
