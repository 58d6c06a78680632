"""The HTML report and the plots: self-contained, readable from a bare run folder."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from fashionlab.engine.plots import plot_bars, plot_confusion, plot_curves
from fashionlab.engine.report import write_report
from fashionlab.errors import FashionlabError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


HISTORY = [
    {"stage": "head", "epoch": 1, "train_loss": float("nan"), "val_metric": 0.40},
    {"stage": "head", "epoch": 2, "train_loss": 0.9, "val_metric": 0.55},
    {"stage": "finetune", "epoch": 1, "train_loss": 0.6, "val_metric": 0.71},
    {"stage": "finetune", "epoch": 2, "train_loss": 0.5, "val_metric": 0.68},
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real (tiny) training run: every file the report reads is one a run writes; one class name needs escaping."""
    import numpy as np

    from fashionlab import api

    from .conftest import COLOURS, TINY, draw

    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        for i in range(40):
            draw(root / "data" / ("<green>" if name == "green" else name) / f"{i}.jpg", colour, rng)
    return api.train("classify", data=str(root / "data"), out=str(root / "runs" / "exp1"), epochs=2, val_fraction=0.25,
                     time_budget=120, **TINY).run


def test_report_is_self_contained(run: Path) -> None:
    out = write_report(run)
    assert out == run / "report.html" and out.is_file()
    html = out.read_text(encoding="utf-8")
    assert "fashionlab report — exp1" in html
    metrics = json.loads((run / "metrics.json").read_text())
    for value in ("classify", "test_efficientnet", "head_epochs", f"{metrics['accuracy']:.4g}",
                  f"{metrics['train_seconds']:.4g}", "train_s_per_image"):  # config, metrics, plan
        assert value in html, value
    assert "&lt;green&gt;" in html and "<green>" not in html
    assert html.count("data:image/png;base64,") >= 2
    assert not re.search(r"""(?:src|href)\s*=\s*["']?https?://""", html, re.IGNORECASE)
    assert "<script" not in html.lower()
    assert "curves.png" in html and "confusion.png" in html
    rows = (run / "predictions" / "val.csv").read_text().splitlines()
    assert len(rows) > 20
    shown = rows[19].split(",")[0]
    hidden = rows[20].split(",")[0]
    assert shown in html and hidden not in html  # the first 20 lines of each file are shown
    assert is_png(run / "plots" / "curves.png")
    assert is_png(run / "plots" / "confusion.png")


def test_report_keeps_existing_plots_and_minimal_run(tmp_path: Path) -> None:
    run = tmp_path / "bare"
    run.mkdir()
    (run / "config.yaml").write_text("task: attributes\n")
    html = write_report(run).read_text(encoding="utf-8")
    assert "attributes" in html and "data:image/png" not in html
    assert not (run / "plots").exists()


def test_missing_config_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(FashionlabError, match="not a run folder"):
        write_report(tmp_path)


def test_plot_curves_with_nan(tmp_path: Path) -> None:
    out = plot_curves(HISTORY, tmp_path / "p" / "curves.png", metric_name="val mAP")
    assert is_png(out)
    all_nan = [{"stage": "head", "epoch": 1, "train_loss": math.nan, "val_metric": math.nan}]
    assert is_png(plot_curves(all_nan, tmp_path / "nan.png"))


def test_plot_confusion_and_bars(tmp_path: Path) -> None:
    assert is_png(plot_confusion([[2, 0], [0, 0]], ["a", "b"], tmp_path / "c.png"))
    assert is_png(plot_confusion([[2, 1], [3, 4]], ["a", "b"], tmp_path / "c2.png", normalize=False))
    assert is_png(plot_bars({"x": 0.5, "y": 0.25, "z": math.nan}, tmp_path / "b.png", "AP", "AP"))
    assert not list(tmp_path.glob(".*.tmp"))
