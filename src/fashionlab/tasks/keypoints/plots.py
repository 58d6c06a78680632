"""Keypoint run plots: training curves with the best (lowest) NE marked, and a predicted-vs-true overlay.

``engine.plots.plot_curves`` marks the highest value as best; NE is lower-is-better, so the curves
are drawn here (same look, best = minimum).
"""
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


def plot_ne_curves(history: list[dict], out: Path) -> Path:
    """Train loss and validation NE per epoch; the best (lowest) NE is starred."""
    x = np.arange(1, len(history) + 1)
    loss = np.array([float(r.get("train_loss", np.nan)) for r in history])
    ne = np.array([float(r.get("val_metric", np.nan)) for r in history])
    fig, (ax_loss, ax_ne) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, values, label in ((ax_loss, loss, "train loss"), (ax_ne, ne, "val NE (lower is better)")):
        ax.plot(x, values, marker="o", markersize=3, color="tab:orange")
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if np.isfinite(ne).any():
        best = int(np.nanargmin(ne))
        ax_ne.scatter([x[best]], [ne[best]], s=120, marker="*", color="red", zorder=5,
                      label=f"best {ne[best]:.4f} (epoch {x[best]})")
        ax_ne.legend(fontsize=8)
    fig.suptitle("training curves — val NE")
    fig.tight_layout()
    return _save(fig, out)


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
