"""Metric and image writers: JSON lines, TensorBoard event files (tensorboardX), stdout, PNG grids.

Layout under ``workdir``::

    metrics.jsonl            one JSON object per ``write_scalars`` call: {"step", "time", **scalars}
    events.out.tfevents.*    TensorBoard scalars and images
    images/<name>_<step>.png image grids (``make_grid``)

On resume, pass ``resume_step``: JSON lines with ``step > resume_step`` (written after the checkpoint
the run resumes from) are dropped, and TensorBoard is told to purge events past that step, so a run
killed and resumed leaves one record per step.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np


def make_grid(images: Any, *, ncols: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile images into one ``uint8`` grid.

    Args:
      images: ``[N, H, W]`` or ``[N, H, W, C]`` (C in {1, 3, 4}) with values in [0, 1].
      ncols: images per row; default ``ceil(sqrt(N))``.
      pad: pixels of border between and around the tiles.
      pad_value: border intensity in [0, 1].

    Returns:
      ``uint8`` array ``[rows*(H+pad)+pad, ncols*(W+pad)+pad]`` (or with a trailing ``C``).

    Raises:
      ValueError: wrong rank or channel count, empty input, non-finite values, or values outside
        [0, 1].
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim not in (3, 4):
        raise ValueError(f"`images` must have shape [N, H, W] or [N, H, W, C]; got {x.shape}.")
    if x.ndim == 4 and x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"`images` channel count must be 1, 3 or 4; got shape {x.shape}.")
    if x.shape[0] == 0:
        raise ValueError("`images` must hold at least one image; got N = 0.")
    if not np.all(np.isfinite(x)):
        raise ValueError("`images` must be finite; found NaN or inf.")
    if x.min() < 0.0 or x.max() > 1.0:
        raise ValueError(f"`images` must lie in [0, 1]; got range [{x.min()!r}, {x.max()!r}].")
    if pad < 0:
        raise ValueError(f"`pad` must be >= 0; got {pad}.")
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    n, h, w = x.shape[:3]
    ncols = int(ncols) if ncols else int(math.ceil(math.sqrt(n)))
    if ncols < 1:
        raise ValueError(f"`ncols` must be >= 1; got {ncols}.")
    nrows = int(math.ceil(n / ncols))
    shape = (nrows * (h + pad) + pad, ncols * (w + pad) + pad) + x.shape[3:]
    grid = np.full(shape, pad_value, dtype=np.float64)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = x[i]
    return np.round(grid * 255.0).astype(np.uint8)


def save_png(path: str, grid: np.ndarray) -> None:
    """Write a ``uint8`` ``[H, W]`` / ``[H, W, C]`` array as PNG (Pillow)."""
    from PIL import Image

    Image.fromarray(np.asarray(grid, dtype=np.uint8)).save(path, format="PNG")


def _scalar(v: Any) -> float | int:
    a = np.asarray(v)
    if a.size != 1:
        raise ValueError(f"scalar metrics only; got an array of shape {a.shape}.")
    a = a.reshape(())
    return int(a) if a.dtype.kind in "iub" else float(a)


class MetricWriter:
    """Writes scalars to JSONL + TensorBoard + stdout, and images to PNG grids + TensorBoard.

    Args:
      workdir: run directory (created if missing).
      resume_step: when resuming from a checkpoint at this step, drop records written past it.
      tensorboard: also write TensorBoard event files.
      stdout: also print one line per ``write_scalars`` call.
      print_fn: where stdout lines go (e.g. ``tqdm.write`` while a progress bar is shown).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        resume_step: int | None = None,
        tensorboard: bool = True,
        stdout: bool = True,
        print_fn=None,
    ):
        self.workdir = os.fspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.images_dir = os.path.join(self.workdir, "images")
        self.jsonl_path = os.path.join(self.workdir, "metrics.jsonl")
        if resume_step is not None:
            self._truncate_jsonl(int(resume_step))
        elif os.path.exists(self.jsonl_path):
            self._truncate_jsonl(-1)  # a fresh run in a used directory starts a fresh log
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        self._stdout = stdout
        self._print = print_fn or (lambda s: print(s, file=sys.stdout, flush=True))
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            kw = {"purge_step": int(resume_step) + 1} if resume_step is not None else {}
            self._tb = SummaryWriter(logdir=self.workdir, flush_secs=10, **kw)

    def _truncate_jsonl(self, last_step: int) -> None:
        if not os.path.exists(self.jsonl_path):
            return
        keep = []
        with open(self.jsonl_path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill mid-write
                    continue
                if rec.get("step", -1) <= last_step:
                    keep.append(json.dumps(rec) + "\n")
        tmp = self.jsonl_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(keep)
        os.replace(tmp, self.jsonl_path)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Record scalar metrics at ``step`` (values: Python/NumPy/JAX scalars)."""
        step = int(step)
        vals = {k: _scalar(v) for k, v in scalars.items()}
        rec = {"step": step, "time": time.time(), **vals}
        self._jsonl.write(json.dumps(rec) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in vals.items():
                self._tb.add_scalar(k, v, step)
        if self._stdout:
            body = "  ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in vals.items())
            self._print(f"[step {step}] {body}")

    def write_images(self, step: int, images: Mapping[str, Any]) -> dict[str, str]:
        """Save each ``[N, H, W(, C)]`` array in [0, 1] as a PNG grid; returns ``{name: path}``."""
        os.makedirs(self.images_dir, exist_ok=True)
        paths = {}
        for name, arr in images.items():
            grid = make_grid(arr)
            path = os.path.join(self.images_dir, f"{name.replace('/', '_')}_{int(step):08d}.png")
            save_png(path, grid)
            paths[name] = path
            if self._tb is not None:
                fmt = "HW" if grid.ndim == 2 else "HWC"
                self._tb.add_image(name, grid, int(step), dataformats=fmt)
        return paths

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Save the flat-able config as text in TensorBoard (the JSON copy lives in config.json)."""
        if self._tb is not None:
            self._tb.add_text("config", "```\n" + json.dumps(hparams, indent=2, default=str) + "\n```", 0)

    def flush(self) -> None:
        self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flush and close every sink (idempotent)."""
        if not self._jsonl.closed:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
