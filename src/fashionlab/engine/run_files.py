"""The run folder a user can read without the code.

RUN/config.yaml  resolved config        RUN/weights/best.pt  best weights (weights_only-safe)
RUN/metrics.json final validation       RUN/weights/last.ckpt Lightning state for --resume
RUN/history.csv  per-epoch metrics      RUN/plots/*.png, RUN/predictions/val.csv, RUN/report.html
RUN/data.json    data summary           RUN/state.json plan + progress (for resume)
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FashionlabError
from ..io import atomic_open, write_json

# what a training run writes into its folder (``--exist-ok`` clears exactly these before a new run)
RUN_ENTRIES = ("config.yaml", "data.json", "state.json", "history.csv", "metrics.json", "plan.json", "report.html",
               "thresholds.json", "oof.csv", "oof_truth.csv", "test.csv", "ddp_handoff.pt", "weights", "predictions",
               "plots", "logs", "tensorboard")


@dataclass
class RunFiles:
    run: Path

    @property
    def config(self) -> Path:
        return self.run / "config.yaml"

    @property
    def weights(self) -> Path:
        return self.run / "weights"

    @property
    def best(self) -> Path:
        return self.weights / "best.pt"

    @property
    def last_ckpt(self) -> Path:
        return self.weights / "last.ckpt"

    @property
    def metrics(self) -> Path:
        return self.run / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.run / "predictions"

    @property
    def plots(self) -> Path:
        return self.run / "plots"

    def holds_run(self) -> bool:
        return self.config.is_file() or self.weights.is_dir() or (self.run / "state.json").is_file()

    def refuse_existing(self, exist_ok: bool) -> None:
        """A new run never lands on top of another: refuse, or (``exist_ok``) clear the old run's files."""
        if not self.holds_run():
            return
        if not exist_ok:
            finished = "a finished run" if self.metrics.is_file() else "an unfinished run"
            raise FashionlabError(f"{self.run} holds {finished}; continue it with --resume {self.run}, train into a "
                                  "new --out folder, or replace it with --exist-ok")
        for name in RUN_ENTRIES:
            path = self.run / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        for fold in self.run.glob("fold[0-9]*"):
            if (fold / "config.yaml").is_file():
                shutil.rmtree(fold)

    def prepare(self) -> None:
        for folder in (self.run, self.weights, self.predictions, self.plots):
            folder.mkdir(parents=True, exist_ok=True)

    def read_state(self) -> dict[str, Any]:
        path = self.run / "state.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise FashionlabError(f"{path}: not valid JSON; the run's progress is unreadable (start a new run)") from None

    def write_state(self, state: dict[str, Any]) -> None:
        write_json(self.run / "state.json", state)

    def write_history(self, history: list[dict]) -> None:
        with atomic_open(self.run / "history.csv", "w", encoding="utf-8") as handle:
            handle.write("stage,epoch,train_loss,val_metric,train_images_per_s\n")
            for row in history:
                ips = row.get("train_images_per_s", float("nan"))
                handle.write(f"{row['stage']},{row['epoch']},{row['train_loss']:.6f},{row['val_metric']:.6f},{ips:.2f}\n")

    def plot(self, history: list[dict], metric_name: str, metrics: dict[str, Any], higher_is_better: bool = True) -> None:
        from .plots import plot_bars, plot_confusion, plot_curves

        if history:
            plot_curves(history, self.plots / "curves.png", metric_name=f"val {metric_name}",
                        higher_is_better=higher_is_better)
        if "confusion_matrix" in metrics and "classes" in metrics:
            plot_confusion(metrics["confusion_matrix"], metrics["classes"], self.plots / "confusion.png")
        if isinstance(metrics.get("per_task"), dict):
            plot_bars(metrics["per_task"], self.plots / "per_task_ap.png", "AP per attribute task", "AP")
