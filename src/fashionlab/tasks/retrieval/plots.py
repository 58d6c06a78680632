"""``plots/retrieval_examples.png``: a few validation queries with their top gallery images.

One row per query: the consumer image, then the first ``top`` shop images ranked for it, framed green
when they show the query's item and red otherwise, with the cosine score on top.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...data.images import load_rgb  # noqa: E402
from ...io import atomic_open  # noqa: E402
from .data import ItemTable  # noqa: E402


def plot_examples(table: ItemTable, results: list[tuple[str, list[str], list[float]]],
                  matches: dict[str, set[str]], out: Path, rows: int = 5, top: int = 5) -> Path | None:
    if not results:
        return None
    path_of = dict(zip(table.ids, table.paths))
    step = max(1, len(results) // rows)
    chosen = results[::step][:rows]
    fig, axes = plt.subplots(len(chosen), top + 1, figsize=(1.6 * (top + 1), 1.7 * len(chosen)), squeeze=False)
    for r, (query, ranked, scores) in enumerate(chosen):
        cells = [(query, "query", "black")] + [
            (g, f"{s:.2f}", "green" if g in matches.get(query, set()) else "red") for g, s in zip(ranked, scores)]
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells):
                ax.axis("off")
                continue
            image_id, title, colour = cells[c]
            ax.imshow(load_rgb(path_of[image_id], draft=96))
            ax.set_title(title, fontsize=8, color=colour)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2.5 if c else 1)
    fig.suptitle("validation queries (left) and their top gallery images (green = same item)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=90)
    finally:
        plt.close(fig)
    with atomic_open(out, "wb") as handle:
        handle.write(buffer.getvalue())
    return Path(out)
