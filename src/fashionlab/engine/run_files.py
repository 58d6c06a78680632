"""The run folder a user can read without the code.

RUN/config.yaml  resolved config        RUN/weights/best.pt  best weights (weights_only-safe)
RUN/metrics.json final validation       RUN/weights/last.ckpt Lightning state for --resume
RUN/history.csv  per-epoch metrics      RUN/plots/*.png, RUN/predictions/val.csv, RUN/report.html
RUN/data.json    data summary           RUN/state.json plan + progress (for resume)
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import atomic_open, write_json
from ..tasks.base import LabelledSet, TaskMeta


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

    def prepare(self) -> None:
        for folder in (self.run, self.weights, self.predictions, self.plots):
            folder.mkdir(parents=True, exist_ok=True)

    def read_state(self) -> dict[str, Any]:
        path = self.run / "state.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def write_state(self, state: dict[str, Any]) -> None:
        write_json(self.run / "state.json", state)

    def write_history(self, history: list[dict]) -> None:
        with atomic_open(self.run / "history.csv", "w", encoding="utf-8") as handle:
            handle.write("stage,epoch,train_loss,val_metric,train_images_per_s\n")
            for row in history:
                ips = row.get("train_images_per_s", float("nan"))
                handle.write(f"{row['stage']},{row['epoch']},{row['train_loss']:.6f},{row['val_metric']:.6f},{ips:.2f}\n")

    def write_data_summary(self, train: LabelledSet, val: LabelledSet, meta: TaskMeta) -> None:
        def counts(data: LabelledSet) -> dict[str, int]:
            names = [f"{meta.tasks[t]}:{meta.classes[t][int(y.argmax())]}" if len(meta.tasks) > 1
                     else meta.classes[0][int(y.argmax())] for t, y in zip(data.task_index, data.targets)]
            return dict(sorted(Counter(names).items()))

        write_json(self.run / "data.json", {"train_images": len(train), "val_images": len(val),
                                            "tasks": meta.tasks, "train_counts": counts(train),
                                            "val_counts": counts(val)})

    def plot(self, history: list[dict], metric_name: str, metrics: dict[str, Any]) -> None:
        from .plots import plot_bars, plot_confusion, plot_curves

        if history:
            plot_curves(history, self.plots / "curves.png", metric_name=f"val {metric_name}")
        if "confusion_matrix" in metrics and "classes" in metrics:
            plot_confusion(metrics["confusion_matrix"], metrics["classes"], self.plots / "confusion.png")
        if isinstance(metrics.get("per_task"), dict):
            plot_bars(metrics["per_task"], self.plots / "per_task_ap.png", "AP per attribute task", "AP")
