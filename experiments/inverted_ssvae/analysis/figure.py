"""The decoded one-hots of the untapped protocol as one figure: a row per variant, a column per dim."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np


def save_decoded_onehots(
    path: str | os.PathLike, decoded: Mapping[str, np.ndarray], labels: Mapping[str, Sequence[str]]
) -> None:
    """Write ``decoded[name]`` (``[10, 784]`` images in [0, 1]) as rows of a PNG, each image titled
    ``y=<dim>: labels[name][dim]`` (e.g. the classifier's digit and probability)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(decoded)
    fig, axes = plt.subplots(len(names), 10, figsize=(10, 1.25 * len(names) + 0.3), squeeze=False)
    for r, name in enumerate(names):
        for d in range(10):
            ax = axes[r, d]
            ax.imshow(np.asarray(decoded[name][d]).reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"y={d}: {labels[name][d]}", fontsize=7)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
