"""Every repository path named in the product's text (docstrings, comments, READMEs) exists.

Paths are recognised by their top-level folder (jaxvae/, experiments/, tests/, benchmarks/); paths in
other repositories (the papers' code) name other folders and are not checked.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_PATH = re.compile(r"(?<![\w./-])((?:jaxvae|experiments|tests|benchmarks)/[\w./-]*\w)")
_SOURCES = ["jaxvae", "experiments", "benchmarks", "README.md"]
_OUTPUTS = {"benchmarks/results/cpu.jsonl"}  # what ``elbo_throughput.py --out`` writes in its usage line


def _named_paths(text: str) -> set[str]:
    paths = set()
    for m in _PATH.finditer(text):
        p = m.group(1)
        if text[m.end() : m.end() + 1] in ("<", "{", "*") or re.search(r"_[A-Z]{2,}\.", p) or p in _OUTPUTS:
            continue  # a pattern (``test_<paper>.py``, ``cpu_DATE.jsonl``) or a file a command writes
        paths.add(p)
    return paths


def _files():
    for src in _SOURCES:
        path = ROOT / src
        if path.is_file():
            yield path
        else:
            yield from (p for p in path.rglob("*") if p.suffix in (".py", ".md") and "results" not in p.parts)


def test_named_paths_are_recognised():
    text = (
        "see ``jaxvae/train/loop.py`` and experiments/vae/README.md, not untapped/M12.py or x/jaxvae/y.py,"
        " nor patterns: tests/models/test_<paper>.py, benchmarks/results/cpu_DATE.jsonl"
    )
    assert _named_paths(text) == {"jaxvae/train/loop.py", "experiments/vae/README.md"}


@pytest.mark.parametrize("path", sorted(_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_named_exists(path):
    missing = sorted(p for p in _named_paths(path.read_text()) if not (ROOT / p.rstrip(".")).exists())
    assert not missing, f"{path.relative_to(ROOT)} names paths that do not exist: {missing}"
