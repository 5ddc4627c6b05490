"""The evaluation protocols: Gemp et al.'s "untapped" cross-entropy on digits 5-9, and M2's test error.

Untapped (per seed, :func:`evaluate_untapped`; Gemp et al. §5.1 and App. D):

1. ``z_bar`` = mean over the labeled images of q(z|x,y)'s location mapped into the box
   (:func:`jaxvae.models.inverted_ssvae.z_posterior_mean`);
2. the 10 one-hots are decoded at ``z_bar`` and labeled by the MNIST classifier of ``classifier.py``;
3. dims 5-9 are matched one-to-one to digits 5-9 (:func:`match_dims`: the highest-probability
   (dim, digit) pair first); dims 0-4 are digits 0-4;
4. ``ce_59`` = the cross-entropy of q(y|x) at the matched dim over every image of digits 5-9.

``ce_59_authors`` is step 3-4 with the authors' evaluation code (``DEMO_mnist5.py`` +
``plotting_mnist.py``, read, not copied): their matching rule (:func:`match_dims_argmax_first`) and their
KL with probabilities clipped to ``[1e-6, 1]`` (:func:`clipped_ce`). M2 with 100 labels
(:func:`evaluate_m2`): the test error of argmax q(y|x).

:func:`compare` is the paired comparison of two variants' per-seed rows (:mod:`jaxvae.metrics.paired`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from experiments.inverted_ssvae import classifier
from jaxvae.metrics.paired import mean_std, paired_comparison
from jaxvae.models import inverted_ssvae

__all__ = [
    "clipped_ce",
    "compare",
    "evaluate_m2",
    "evaluate_untapped",
    "match_dims",
    "match_dims_argmax_first",
    "summarize",
]

CHUNK = 5000  # images per compiled evaluation call


def match_dims(probs: np.ndarray, dims=range(5, 10), digits=range(5, 10)) -> dict[int, int]:
    """Greedy one-to-one match of one-hot dims to digits: the highest classifier probability first.

    ``probs[d, g]``: the classifier's probability of digit ``g`` for the image decoded from one-hot ``d``.
    """
    out: dict[int, int] = {}
    used = set()
    for _, d, g in sorted(((probs[d, g], d, g) for d in dims for g in digits), reverse=True):
        if d not in out and g not in used:
            out[d] = g
            used.add(g)
    return out


def match_dims_argmax_first(probs: np.ndarray, dims=range(5, 10), digits=range(5, 10)) -> dict[int, int]:
    """One-to-one match with the rule of the authors' evaluation (``DEMO_mnist5.py`` ``assign_permutation``,
    written from its description): every dim asks for its most probable digit; a digit asked for by
    exactly one dim goes to it; the dims in a clash are matched again, recursively, among the digits not
    yet given; when every remaining dim is in a clash, the dim with the highest probability of the first
    clashing digit (in dim order) takes it.

    Differs from :func:`match_dims` when a dim's uncontested first choice has a lower probability than
    another dim's second choice of the same digit.
    """
    rows, cols = list(dims), list(digits)
    out: dict[int, int] = {}
    while rows:
        if len(rows) == 1:
            out[rows[0]] = max(cols, key=lambda g: probs[rows[0], g])
            break
        want = {d: max(cols, key=lambda g: probs[d, g]) for d in rows}
        asked = [want[d] for d in rows]
        unique = {g for g in asked if asked.count(g) == 1}
        out.update({d: want[d] for d in rows if want[d] in unique})
        clash_rows = [d for d in rows if want[d] not in unique]
        free_cols = [g for g in cols if g not in unique]
        if len(clash_rows) == len(rows):  # nobody settled: the best claimant of the first clash wins
            g0 = asked[0]
            winner = max(clash_rows, key=lambda d: probs[d, g0])
            out[winner] = g0
            clash_rows = [d for d in clash_rows if d != winner]
            free_cols = [g for g in free_cols if g != g0]
        rows, cols = clash_rows, free_cols
    return out


def clipped_ce(log_q: np.ndarray, target: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per-example ``KL(t || p)`` of the authors' evaluation (``plotting_mnist.KL``): ``t`` the one-hot
    target and ``p`` the softmax, both clipped to ``[eps, 1]`` (so each value is at most about ``-log eps``).

    ``log_q`` ``[N, C]`` log-probabilities, ``target`` ``[N]`` ints; returns ``[N]``."""
    t = np.clip(np.eye(log_q.shape[-1])[target], eps, 1.0)
    p = np.clip(np.exp(log_q), eps, 1.0)
    return np.sum(t * (np.log(t) - np.log(p)), axis=-1)


@functools.lru_cache(maxsize=16)
def _compiled(model_cfg: inverted_ssvae.Config) -> dict[str, Callable]:
    """Jitted evaluation functions of one model config taking ``params`` as an argument: compiled once
    per config and chunk shape, not once per seed."""
    return {
        "z_mean": jax.jit(lambda p, x, y: inverted_ssvae.z_posterior_mean(model_cfg, p, x, y)),
        "log_q": jax.jit(lambda p, x: jax.nn.log_softmax(inverted_ssvae.classify(model_cfg, p, x))),
    }


def _chunked(fn: Callable, *arrays: np.ndarray) -> np.ndarray:
    n = len(arrays[0])
    return np.concatenate([np.asarray(fn(*(a[i : i + CHUNK] for a in arrays))) for i in range(0, n, CHUNK)])


def _targets(dim_to_digit: Mapping[int, int], labels: np.ndarray) -> np.ndarray:
    digit_to_dim = {g: d for d, g in dim_to_digit.items()}
    return np.array([digit_to_dim[g] for g in labels])


def evaluate_untapped(model_cfg, params, data: Mapping[str, Any], clf_params) -> dict[str, Any]:
    """The untapped protocol (module docstring) for one seed's ``params`` on :func:`data.build_data`'s dict.

    Returns the per-seed row: ``ce_59``, ``ce_59_test_only``, ``ce_59_authors``, ``acc_59``,
    ``frac_59_predicted_in_dims_5_9``, ``acc_04_labeled``, ``z_bar``, the decoded one-hots' classifier
    digits and probabilities, both matchings, and ``decoded`` (``[10, 784]`` images, for a figure).
    """
    fns = _compiled(model_cfg)
    x_l, y_l = data["labeled"]["x_l"], data["labeled"]["y_l"]
    onehot = np.eye(10, dtype=np.float32)
    z_bar = np.mean(_chunked(functools.partial(fns["z_mean"], params), x_l, onehot[y_l]), axis=0)
    imgs = np.asarray(inverted_ssvae.decode_mean(model_cfg, params, onehot, np.tile(z_bar, (10, 1))))
    probs = np.asarray(jax.nn.softmax(classifier.logits_fn(clf_params, imgs)))
    greedy = {d: d for d in range(5)} | match_dims(probs)
    authors = {d: d for d in range(5)} | match_dims_argmax_first(probs)
    log_q = _chunked(functools.partial(fns["log_q"], params), data["eval_x"])
    target = _targets(greedy, data["eval_y"])
    nll = -log_q[np.arange(len(target)), target]
    pred = np.argmax(log_q, -1)
    lab_pred = np.argmax(_chunked(functools.partial(fns["log_q"], params), x_l), -1)
    return {
        "ce_59": float(np.mean(nll)),
        "ce_59_test_only": float(np.mean(nll[data["eval_test_mask"]])),
        "ce_59_authors": float(np.mean(clipped_ce(log_q, _targets(authors, data["eval_y"])))),
        "acc_59": float(np.mean(pred == target)),
        "frac_59_predicted_in_dims_5_9": float(np.mean(pred >= 5)),
        "acc_04_labeled": float(np.mean(lab_pred == y_l)),
        "z_bar": z_bar.tolist(),
        "decoded_argmax_digit": np.argmax(probs, -1).tolist(),
        "decoded_argmax_prob": np.max(probs, -1).round(3).tolist(),
        "num_distinct_decoded_digits": int(len(set(np.argmax(probs, -1).tolist()))),
        "dim_to_digit": {str(k): int(v) for k, v in sorted(greedy.items())},
        "dim_to_digit_authors": {str(k): int(v) for k, v in sorted(authors.items())},
        "decoded": imgs,
    }


def evaluate_m2(model_cfg, params, data: Mapping[str, Any]) -> dict[str, float]:
    """``{"test_error"}``: the error of argmax q(y|x) on the evaluation images."""
    log_q = _chunked(functools.partial(_compiled(model_cfg)["log_q"], params), data["eval_x"])
    return {"test_error": float(np.mean(np.argmax(log_q, -1) != data["eval_y"]))}


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict]:
    """``{key: mean_std over rows}`` for every float entry of the per-seed rows; a key with a non-finite
    value (a diverged seed) gets ``{"mean": None, "std": None, "n", "non_finite"}`` instead."""
    out = {}
    for k in [k for k, v in rows[0].items() if isinstance(v, float)]:
        vals = np.asarray([r[k] for r in rows], np.float64)
        bad = int(np.sum(~np.isfinite(vals)))
        out[k] = mean_std(vals) if not bad else {"mean": None, "std": None, "n": len(vals), "non_finite": bad}
    return out


def compare(a_rows: Sequence[Mapping[str, Any]], b_rows: Sequence[Mapping[str, Any]], key: str = "ce_59") -> dict:
    """Variant ``a`` minus variant ``b`` on ``key``, unpaired and paired by seed
    (:func:`jaxvae.metrics.paired.paired_comparison`; ``paired["a_lower"]`` counts the seeds where ``a``
    is lower, the p-values are for ``a`` below ``b``). Rows are matched by their ``"seed"``, not by position.

    Raises:
      ValueError: if a side is empty, holds a non-finite value, or the two share no seed.
    """
    return paired_comparison({int(r["seed"]): r[key] for r in a_rows}, {int(r["seed"]): r[key] for r in b_rows})
