"""Run plots as PNG files: training curves, confusion matrix, horizontal bars.

Headless (Agg backend); every figure is closed after saving and the PNG is written atomically.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..io import atomic_open  # noqa: E402

STAGE_COLOURS = {"head": "tab:blue", "finetune": "tab:orange"}


def _save(fig: plt.Figure, out: Path) -> Path:
    """Render ``fig`` to PNG in memory, write it atomically to ``out`` and close the figure."""
    out = Path(out)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    with atomic_open(out, "wb") as handle:
        handle.write(buffer.getvalue())
    return out


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def plot_curves(history: list[dict], out: Path, metric_name: str = "val metric", higher_is_better: bool = True) -> Path:
    """Train loss and validation metric vs a running epoch index over both stages; the best epoch (in
    the metric's own direction) is starred."""
    x = np.arange(1, len(history) + 1)
    stages = [str(row.get("stage", "")) for row in history]
    loss = np.array([_float(row.get("train_loss")) for row in history], dtype=float)
    metric = np.array([_float(row.get("val_metric")) for row in history], dtype=float)
    boundaries = [i + 0.5 for i in range(1, len(stages)) if stages[i] != stages[i - 1]]

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, values, label in ((ax_loss, loss, "train loss"), (ax_metric, metric, metric_name)):
        for stage in dict.fromkeys(stages):
            mask = np.array([s == stage for s in stages])
            ax.plot(x[mask], values[mask], marker="o", markersize=3,
                    color=STAGE_COLOURS.get(stage, "tab:gray"), label=stage or None)
        for b in boundaries:
            ax.axvline(b, color="gray", linestyle="--", linewidth=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (both stages)")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if np.isfinite(metric).any():
        best = int(np.nanargmax(metric) if higher_is_better else np.nanargmin(metric))
        ax_metric.scatter([x[best]], [metric[best]], s=120, marker="*", color="red", zorder=5,
                          label=f"best {metric[best]:.4f} (epoch {x[best]})")
    for ax in (ax_loss, ax_metric):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"training curves — {metric_name}" + ("" if higher_is_better else " (lower is better)"))
    fig.tight_layout()
    return _save(fig, out)


def plot_confusion(matrix: list[list[int]], classes: list[str], out: Path, normalize: bool = True) -> Path:
    """Annotated heatmap, rows = truth, columns = prediction (row-normalised by default)."""
    counts = np.asarray(matrix, dtype=float).reshape(len(classes), len(classes)) if classes else np.zeros((0, 0))
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    else:
        shown = counts
    n = len(classes)
    size = max(4.0, 0.6 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=classes, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    threshold = (shown.max() / 2) if shown.size else 0
    for i in range(n):
        for j in range(n):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > threshold else "black")
    fig.tight_layout()
    return _save(fig, out)


def plot_bars(values: dict[str, float], out: Path, title: str, xlabel: str = "") -> Path:
    """Horizontal bars in the given order (first on top) with the value written on each bar."""
    names = list(values)
    numbers = [_float(values[k]) for k in names]
    fig, ax = plt.subplots(figsize=(7, max(2.0, 0.35 * len(names) + 1.2)))
    y = np.arange(len(names))
    bars = ax.barh(y, [0.0 if math.isnan(v) else v for v in numbers], color="tab:blue")
    ax.set_yticks(y, labels=names)
    ax.invert_yaxis()
    finite = [v for v in numbers if not math.isnan(v)]
    top = max(finite + [0.0])
    ax.set_xlim(min(finite + [0.0]), top * 1.15 if top > 0 else 1.0)
    for bar, value in zip(bars, numbers):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                " nan" if math.isnan(value) else f" {value:.3f}", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


def plot_lines(x: list[float], series: dict[str, list[float]], out: Path, title: str, xlabel: str,
               ylabel: str, marks: dict[str, float] | None = None) -> Path:
    """Several curves over the same x (e.g. F2 vs threshold per label); ``marks`` draws vertical lines."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, ys in series.items():
        ax.plot(x, ys, label=name, linewidth=2.5 if name == "all labels (sample F2)" else 1.0)
    for name, value in (marks or {}).items():
        ax.axvline(value, linestyle="--", linewidth=0.8, color="grey")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out)
