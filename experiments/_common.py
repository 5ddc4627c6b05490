"""What every experiment shares: the binarized-MNIST data section, provenance, and results files.

- :class:`MnistData` / :func:`load_binarized_mnist`: the one definition of the binarized MNIST the
  likelihood experiments train and test on (dynamic or static training binarization, a fixed-seed test
  binarization; not the Larochelle file).
- :class:`IWEval` / :func:`iw_nll`: the importance-weighted test NLL (Burda et al. 2016) of a model's
  ``log_weight_fn``, with its standard error and time.
- :func:`provenance`: command, commit, machine, date and versions of a run, for its results file.
- :func:`write_results` / :func:`read_results`: a results file written atomically (a temporary file,
  then ``os.replace``), so an interrupted run never leaves a half-written one; a damaged one is set
  aside, not fatal.
- :func:`claim_workdir`: a work dir belongs to one experiment (``experiment.json``); another
  experiment's job refuses it instead of overwriting its results.
- :func:`run_main`: the command line of every experiment: parse, claim the work dir, run, and turn
  failures into one ``error:`` line and a preemption into its exit status.

Results a README quotes are stored as JSON under ``experiments/<paper>/results/`` with this
provenance (command, commit, machine, date, seeds).
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from jaxvae.config import check_one_of, check_positive_int, config_to_dict

__all__ = [
    "IWEval",
    "claim_workdir",
    "run_main",
    "MnistData",
    "config_to_dict",
    "git_commit",
    "iw_nll",
    "load_binarized_mnist",
    "machine_description",
    "provenance",
    "read_results",
    "write_results",
]


@dataclasses.dataclass(frozen=True)
class MnistData:
    """Binarized MNIST as the likelihood experiments use it.

    Attributes:
      binarization: ``'dynamic'``: each training batch is re-binarized, ``b ~ Bernoulli(x)``, every
        time it is drawn; ``'static'``: one fixed-seed stochastic binarization of the training set.
        Either way the test set is one fixed-seed stochastic binarization (``test_seed``), so test
        numbers are comparable across runs. Not the Larochelle binarized-MNIST file.
      static_seed: seed of the static training binarization.
      test_seed: seed of the test binarization.
      train_examples: use only the first N training images (None: all 60,000).
      test_examples: use only the first N test images (None: all 10,000).
    """

    binarization: Literal["dynamic", "static"] = "dynamic"
    static_seed: int = 1
    test_seed: int = 0
    train_examples: int | None = None
    test_examples: int | None = None

    def __post_init__(self):
        check_one_of("binarization", self.binarization, ("dynamic", "static"))
        check_positive_int("static_seed", self.static_seed, allow_zero=True)
        check_positive_int("test_seed", self.test_seed, allow_zero=True)
        for name in ("train_examples", "test_examples"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))


def load_binarized_mnist(cfg: MnistData, x_shape: Sequence[int] = (784,)):
    """``(train, test, transform)``: ``{"x": [N, *x_shape]}`` float32 arrays and the training transform.

    ``train`` holds grey levels in [0, 1] for dynamic binarization (``transform`` then re-binarizes each
    batch) and 0/1 for static (``transform`` is None); ``test`` is always the fixed-seed binarization.
    """
    from jaxvae.data.mnist import binarize_static, load_mnist, to_unit_float
    from jaxvae.data.transforms import dynamic_binarize
    from jaxvae.train.loop import check_finite_batch

    m = load_mnist()
    x_train = to_unit_float(m.x_train)[: cfg.train_examples]
    x_test = binarize_static(to_unit_float(m.x_test), seed=cfg.test_seed)[: cfg.test_examples]
    transform = dynamic_binarize(("x",)) if cfg.binarization == "dynamic" else None
    if cfg.binarization == "static":
        x_train = binarize_static(x_train, seed=cfg.static_seed)
    shape = tuple(x_shape)
    train = {"x": np.asarray(x_train, np.float32).reshape((-1,) + shape)}
    test = {"x": np.asarray(x_test, np.float32).reshape((-1,) + shape)}
    check_finite_batch(train, where="train data")
    check_finite_batch(test, where="test data")
    return train, test, transform


@dataclasses.dataclass(frozen=True)
class IWEval:
    """The importance-weighted NLL run after training (:func:`iw_nll`).

    Attributes:
      samples: K of ``log p(x) ~= logsumexp_k log w_k - log K`` (Burda et al. 2016, Eq. 8); 0 skips it.
        The literature's "test NLL" uses 5000.
      examples: number of test examples it runs on, the first ones (None: the whole test set).
      sample_chunk: importance samples drawn per chunk (memory ~ batch x chunk).
      batch_size: examples per compiled batch (None: chosen from ``sample_chunk``).
    """

    samples: int = 1000
    examples: int | None = 1000
    sample_chunk: int = 250
    batch_size: int | None = None

    def __post_init__(self):
        check_positive_int("samples", self.samples, allow_zero=True)
        check_positive_int("sample_chunk", self.sample_chunk)
        for name in ("examples", "batch_size"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))


def iw_nll(cfg: IWEval, log_weight_fn, x: np.ndarray, key) -> dict[str, Any]:
    """The IW-NLL of ``x[:cfg.examples]`` in nats: ``{"iw_nll", "iw_nll_stderr", "iw_samples",
    "iw_examples", "iw_seconds", "per_example_log_likelihood" [n]}`` (the standard error is over the
    examples; the per-example values allow paired comparisons of models on the same examples)."""
    from jaxvae.metrics.iw_nll import iw_log_likelihood, mean_and_stderr

    x = x[: cfg.examples]
    t0 = time.time()
    ll = np.asarray(
        iw_log_likelihood(
            log_weight_fn,
            x,
            key,
            num_samples=cfg.samples,
            sample_chunk=min(cfg.sample_chunk, cfg.samples),
            batch_size=None if cfg.batch_size is None else min(cfg.batch_size, len(x)),
        )
    )
    nll, se = mean_and_stderr(-ll)
    return {
        "iw_nll": nll,
        "iw_nll_stderr": se,
        "iw_samples": cfg.samples,
        "iw_examples": int(len(x)),
        "iw_seconds": time.time() - t0,
        "per_example_log_likelihood": ll,
    }


def machine_description() -> str:
    """What ran a job: device kind and count, platform, host CPU count."""
    import jax

    devs = jax.devices()
    return f"{len(devs)} x {devs[0].device_kind} ({devs[0].platform}), {os.cpu_count()} host CPU cores"


def git_commit() -> str | None:
    """The checkout's commit (``-dirty`` when it has uncommitted changes); None outside a git checkout."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


_RUN_COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_command", default=None)


def _command_line() -> str:
    """The command that reproduces this run: set by :func:`run_main` while it runs (an experiment called
    as ``main(argv)`` from Python, a notebook or a test, records ``python -m <its module> ARGV``, not the
    host process's command); otherwise this process's command line, ``python -m package.module ARGS``
    for a module run."""
    if (command := _RUN_COMMAND.get()) is not None:
        return command
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script, args = sys.argv[0], sys.argv[1:]
    rel = os.path.relpath(os.path.abspath(script), root) if script else script
    if rel.endswith(".py") and not rel.startswith(".."):
        module = rel[: -len(".py")].replace(os.sep, ".")
        return " ".join(["python", "-m", module.removesuffix(".__main__"), *args])
    return " ".join(["python", script, *args])


def provenance(seeds: Sequence[int] | None = None, command: Sequence[str] | None = None) -> dict[str, Any]:
    """Where a result comes from: command line, commit, machine, UTC date, jax version, seeds."""
    import jax

    return {
        "command": " ".join(command) if command is not None else _command_line(),
        "commit": git_commit(),
        "machine": machine_description(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "jax_version": jax.__version__,
        "seeds": None if seeds is None else [int(s) for s in seeds],
    }


def write_results(path: str | os.PathLike, results: Mapping[str, Any], **meta: Any) -> dict:
    """Write ``{**results, "provenance": provenance(**meta)}`` to ``path`` as JSON, atomically.

    ``meta`` goes to :func:`provenance` (``seeds``, ``command``). Returns what was written.
    """
    out = config_to_dict({**dict(results), "provenance": provenance(**meta)})
    path = os.fspath(path)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return out


def read_results(path: str | os.PathLike) -> dict | None:
    """A results file's contents; None when it does not exist or is damaged.

    A damaged file (not valid JSON, e.g. cut by a full disk) is reported by path and moved aside to
    ``<path>.damaged-<time>``, so the job recomputes and rewrites it instead of failing on every rerun.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            out = json.load(f)
        if not isinstance(out, dict):
            raise ValueError(f"a {type(out).__name__}, not an object")
        return out
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
        aside, n = f"{path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}", 1
        while os.path.exists(aside):
            aside, n = f"{aside.rsplit('~', 1)[0]}~{n}", n + 1
        os.replace(path, aside)
        print(f"warning: {path} is not a valid results file ({e}); moved to {aside}, recomputing it.", flush=True)
        return None


OWNER_FILE = "experiment.json"


def claim_workdir(workdir: str | os.PathLike, experiment: str) -> str:
    """Create ``workdir`` if needed and record that it belongs to ``experiment`` (``experiment.json``).

    Raises:
      ValueError: naming the path, when it is a file, cannot be written, or belongs to another experiment.
    """
    workdir = os.fspath(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir {workdir} is a file; give a directory.")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--workdir {workdir} cannot be created: {e.strerror}.") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise ValueError(f"--workdir {workdir} is not writable.")
    owner_path = os.path.join(workdir, OWNER_FILE)
    owner = None
    if os.path.exists(owner_path):
        try:
            with open(owner_path, encoding="utf-8") as f:
                owner = json.load(f).get("experiment")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            owner = None  # damaged: claimed again below
    if owner is not None and owner != experiment:
        raise ValueError(
            f"--workdir {workdir} belongs to the experiment {owner!r} ({owner_path}); this is {experiment!r}: "
            "use another work dir."
        )
    if owner is None:
        tmp = f"{owner_path}.tmp.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"experiment": experiment}, f)
        os.replace(tmp, owner_path)
    return workdir


def run_main(run, argv, *, experiment: str, expected: type, description: str | None = None) -> dict:
    """An experiment's command line: ``run(config, workdir) -> results`` with the shared behaviour.

    A bad ``--config`` or ``--set`` prints one ``error:`` line and exits with status 2; a work dir that is
    a file, unwritable or another experiment's, and a ``ValueError``/``OSError`` of the run (bad data, a
    checkpoint of another run, ...) print one ``error:`` line and exit with status 1; a run stopped by a
    signal (``results["preempted"]``, checkpoint saved) exits with ``128 + signal`` (143 for SIGTERM,
    130 for Ctrl-C): re-running the same command resumes.
    """
    from experiments import _cli

    cfg, workdir = _cli.parse(argv, description=description, expected=expected)
    module = getattr(run, "__module__", "__main__")  # "__main__" under `python -m`: sys.argv says it all
    token = _RUN_COMMAND.set(
        None if module == "__main__" or argv is None else " ".join(["python", "-m", module, *argv])
    )
    try:
        claim_workdir(workdir, experiment)
        results = run(cfg, workdir)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        _RUN_COMMAND.reset(token)
    if isinstance(results, dict) and results.get("preempted"):
        print(
            f"stopped by signal {results.get('signal')} at step {results.get('step')}; checkpoint saved: re-run the "
            "same command to resume.",
            file=sys.stderr,
        )
        raise SystemExit(128 + int(results.get("signal") or 15))
    return results
