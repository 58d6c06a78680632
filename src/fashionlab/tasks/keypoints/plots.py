"""Keypoint run plots: the predicted-vs-true overlay (training curves are the engine's)."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ...data.images import load_rgb  # noqa: E402
from ...io import atomic_open  # noqa: E402
from .dataset import CATEGORY_MASK, KeypointRecords  # noqa: E402


def _save(fig: plt.Figure, out: Path) -> Path:
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    with atomic_open(out, "wb") as handle:
        handle.write(buffer.getvalue())
    return Path(out)


def plot_overlay(records: KeypointRecords, coords: np.ndarray, out: Path, n: int = 8) -> Path:
    """A grid of up to ``n`` images: true points (green circles; hollow when occluded), predictions
    (red crosses) and a line from each true point to its prediction."""
    count = min(n, len(records))
    cols = min(4, max(1, count))
    rows = max(1, -(-count // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k in range(count):
        ax = axes.flat[k]
        ax.imshow(load_rgb(records.paths[k]))
        mask = CATEGORY_MASK[records.categories[k]]
        truth, v, pred = records.xy[k], records.v[k], coords[k]
        for j in np.nonzero(mask)[0]:
            if v[j] != -1:
                ax.plot([truth[j, 0], pred[j, 0]], [truth[j, 1], pred[j, 1]], color="yellow", linewidth=0.8)
                ax.scatter([truth[j, 0]], [truth[j, 1]], s=22, facecolors="lime" if v[j] == 1 else "none",
                           edgecolors="lime", linewidths=1.0)
            ax.scatter([pred[j, 0]], [pred[j, 1]], s=22, marker="x", color="red", linewidths=1.2)
        ax.set_title(records.categories[k], fontsize=9)
    fig.suptitle("keypoints: true (green, hollow = occluded) vs predicted (red x)")
    fig.tight_layout()
    return _save(fig, out)
