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


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "exp1"
    (run / "predictions").mkdir(parents=True)
    (run / "config.yaml").write_text("task: classify\nmodel: test_efficientnet\nimgsz: 32\nhead_epochs: 2\n")
    (run / "metrics.json").write_text(json.dumps({
        "map": 0.8123, "accuracy": 0.75, "best_metric": 0.71, "train_seconds": 12.5,
        "per_task": {"colour_labels": 0.9012, "bright_labels": 0.6543},
        "confusion_matrix": [[5, 1, 0], [0, 4, 2], [1, 0, 6]],
        "classes": ["red", "green", "blue"],
    }))
    (run / "data.json").write_text(json.dumps({"train_images": 24, "val_images": 6,
                                               "class_counts": {"red": 10, "<green>": 8}}))
    (run / "plan.json").write_text(json.dumps({"budget_seconds": 600, "head_epochs": 2}))
    lines = ["stage,epoch,train_loss,val_metric,train_images_per_s"]
    lines += [f"{r['stage']},{r['epoch']},{r['train_loss']:.6f},{r['val_metric']:.6f},100.00" for r in HISTORY]
    (run / "history.csv").write_text("\n".join(lines) + "\n")
    rows = ["path,true,pred,score"] + [f"img_{i}.jpg,red,blue,0.{i:02d}" for i in range(30)]
    (run / "predictions" / "val.csv").write_text("\n".join(rows) + "\n")
    return run


def test_report_is_self_contained(run: Path) -> None:
    out = write_report(run)
    assert out == run / "report.html" and out.is_file()
    html = out.read_text(encoding="utf-8")
    assert "fashionlab report — exp1" in html
    assert "classify" in html
    for option in ("task", "model", "imgsz", "head_epochs", "test_efficientnet"):
        assert option in html
    for value in ("0.8123", "0.75", "0.9012", "0.6543", "colour_labels", "12.5", "budget_seconds"):
        assert value in html
    assert "&lt;green&gt;" in html and "<green>" not in html
    assert html.count("data:image/png;base64,") >= 2
    assert not re.search(r"""(?:src|href)\s*=\s*["']?https?://""", html, re.IGNORECASE)
    assert "<script" not in html.lower()
    assert "curves.png" in html and "confusion.png" in html
    assert "img_18.jpg" in html and "img_19.jpg" not in html  # header + 19 rows = 20 lines
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
