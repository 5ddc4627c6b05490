"""The experiments' command line: ``--config PATH --workdir DIR --set a.b=value ...``.

A config module defines ``get_config()`` returning a frozen dataclass tree (sections are nested
dataclasses). ``--set`` overrides one leaf field by its dotted path; the text is parsed by the field's
annotated type and applied with ``dataclasses.replace`` (so each dataclass's own validation runs)::

    python -m experiments.vae.main --config experiments/vae/configs/default.py --workdir runs/vae \\
        --set train.num_steps=100 --set model.hidden=256,256 --set optim.clip_global_norm=none

Value syntax by type: ``int`` (``1000``, ``10_000``, ``1e4``), ``float``, ``bool``
(``true/false/1/0/yes/no``), ``str`` (as written), ``tuple[int, ...]`` (``500,500`` or ``(500, 500)``;
``()`` for empty), ``Optional[X]`` (``none`` for None), ``Literal[...]`` (one of the choices).
An unknown field, or a section given a value, is an error that lists the valid fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

__all__ = [
    "parse",
    "parse_args",
    "load_config",
    "apply_overrides",
    "parse_value",
]


class ConfigError(ValueError):
    """A bad ``--config`` or ``--set``; the message says what is wrong and what is valid."""


def load_config(path: str | os.PathLike) -> Any:
    """Import the config module at ``path`` and return ``get_config()``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no such file {path!r}.")
    name = "_jaxvae_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"--config: {path!r} line {e.lineno}: {e.msg}.") from None
    except Exception as e:  # an import or a value the config module itself gets wrong
        raise ConfigError(f"--config: loading {path!r} failed: {type(e).__name__}: {e}") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config: {path!r} defines no get_config().")
    try:
        cfg = module.get_config()
    except (TypeError, ValueError) as e:  # e.g. a Config's own validation
        raise ConfigError(f"--config: get_config() in {path!r} failed: {e}") from None
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise ConfigError(
            f"--config: get_config() in {path!r} must return a dataclass instance; got {type(cfg).__name__}."
        )
    return cfg


def _fields_desc(obj: Any) -> str:
    out = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        out.append(f"{f.name} (section)" if dataclasses.is_dataclass(v) else f"{f.name}={v!r}")
    return ", ".join(out)


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
_NONE = {"none", "null"}


def parse_value(text: str, tp: Any, *, name: str = "value") -> Any:
    """Parse ``text`` as a value of type ``tp`` (see the module docstring for the syntax)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    s = text.strip()
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and s.lower() in _NONE:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return parse_value(text, a, name=name)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{name}: cannot parse {text!r} as {tp}: " + "; ".join(errors))
    if origin is typing.Literal:
        for choice in args:
            try:
                if parse_value(text, type(choice), name=name) == choice:
                    return choice
            except ConfigError:
                pass
        raise ConfigError(f"{name}: must be one of {list(args)}; got {text!r}.")
    if origin in (tuple, list, typing.Sequence) or tp in (tuple, list):
        body = s[1:-1] if s[:1] in "([" and s[-1:] in ")]" else s
        items = [p.strip() for p in body.split(",") if p.strip()]
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise ConfigError(f"{name}: expected {len(args)} comma-separated values; got {text!r}.")
            return tuple(parse_value(i, a, name=name) for i, a in zip(items, args))
        elem = args[0] if args else str
        out = [parse_value(i, elem, name=name) for i in items]
        return out if origin is list or tp is list else tuple(out)
    if tp is bool:
        if s.lower() in _TRUE:
            return True
        if s.lower() in _FALSE:
            return False
        raise ConfigError(f"{name}: expected a bool (true/false); got {text!r}.")
    if tp is int:
        try:
            return int(s.replace("_", ""))
        except ValueError:
            try:
                f = float(s)
            except ValueError:
                raise ConfigError(f"{name}: expected an int; got {text!r}.") from None
            if f.is_integer():
                return int(f)
            raise ConfigError(f"{name}: expected an int; got {text!r}.") from None
    if tp is float:
        try:
            return float(s.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{name}: expected a float; got {text!r}.") from None
    if tp is str:
        return text
    if tp is Any:
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            return text
    raise ConfigError(f"{name}: cannot parse a value of type {tp} from the command line.")


def _set(obj: Any, path: list[str], text: str, full: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(obj)}
    head = path[0]
    if head not in names:
        raise ConfigError(
            f"--set {full}: {type(obj).__name__} has no field {head!r}; valid fields: {_fields_desc(obj)}."
        )
    cur = getattr(obj, head)
    if len(path) > 1:
        if not dataclasses.is_dataclass(cur):
            raise ConfigError(f"--set {full}: {head!r} is a value ({cur!r}), not a section.")
        new = _set(cur, path[1:], text, full)
    else:
        if dataclasses.is_dataclass(cur):
            raise ConfigError(f"--set {full}: {head!r} is a section; set one of its fields: {_fields_desc(cur)}.")
        hints = typing.get_type_hints(type(obj))
        new = parse_value(text, hints.get(head, type(cur)), name=f"--set {full}")
    try:
        return dataclasses.replace(obj, **{head: new})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--set {full}: {e}") from None


def apply_overrides(cfg: Any, overrides: Sequence[str]) -> Any:
    """Apply ``["a.b=value", ...]`` to the dataclass tree ``cfg`` (returns a new tree)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (e.g. train.num_steps=100); got {item!r}.")
        key, text = item.split("=", 1)
        path = [p for p in key.strip().split(".")]
        if not all(path):
            raise ConfigError(f"--set: bad dotted path {key!r}.")
        cfg = _set(cfg, path, text, item)
    return cfg


def parse_args(argv: Sequence[str] | None = None, *, description: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, help="path to a config module defining get_config()")
    p.add_argument(
        "--workdir",
        required=True,
        help="run directory (checkpoints, metrics, images); re-running on the same directory resumes",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field by dotted path, e.g. train.num_steps=100 (repeatable)",
    )
    return p.parse_args(argv)


def parse(
    argv: Sequence[str] | None = None, *, description: str | None = None, expected: type | None = None
) -> tuple[Any, str]:
    """Parse the command line into ``(config, workdir)``; a bad config or override prints one ``error:``
    line naming the file or field and exits with status 2.

    Args:
      expected: the experiment's config class; a config module of another experiment is refused.
    """
    args = parse_args(argv, description=description)
    try:
        cfg = apply_overrides(load_config(args.config), args.overrides)
        if expected is not None and not isinstance(cfg, expected):
            raise ConfigError(
                f"--config: {args.config!r} is a config of {type(cfg).__module__}, not of this experiment "
                f"({expected.__module__}): use one of this experiment's configs."
            )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return cfg, args.workdir
