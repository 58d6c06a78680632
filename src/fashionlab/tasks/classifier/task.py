"""The classification family's task base (attributes, classify, styles): a subclass reads its labels,
scores probabilities with its metric and writes its file formats; training, prediction, K-fold
out-of-fold files, export and serving are shared."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...config import RunConfig
from ...data.labelled import LabelledSet, TaskMeta
from ...engine.hooks import TrainResult
from ...io import write_json  # noqa: F401 - subclasses write JSON beside their outputs
from ..base import TTA_ALL, Task
from .config import ClassifierConfig
from .hooks import ClassifierHooks

log = logging.getLogger(__name__)


class ClassifierTask(Task):
    config_class: ClassVar[type[RunConfig]] = ClassifierConfig
    weights_format = "fashionlab-classifier-1"
    serve_adapter = "fashionlab.serve.classifier:ClassifierAdapter"
    tta = TTA_ALL
    submit_tta = "10crop"
    combine = ("mean", "vote", "confidence")
    exportable = True

    def hooks(self, cfg: RunConfig) -> ClassifierHooks:
        return ClassifierHooks(self, cfg)

    def cost_matrix(self, cfg: RunConfig, meta: TaskMeta) -> np.ndarray | None:
        """A K×K severity matrix for cost-aware training, when the task supports one."""
        return None

    def data_summary_extra(self) -> dict[str, Any]:
        """Task-specific additions to ``RUN/data.json``."""
        return {}

    # -- the hooks a subclass fills in -------------------------------------------------------------
    def load_train(self, cfg: RunConfig) -> tuple[LabelledSet, LabelledSet, TaskMeta]:
        raise NotImplementedError

    def score(self, probs: list[np.ndarray], data: LabelledSet, meta: TaskMeta) -> dict[str, Any]:
        raise NotImplementedError

    def load_source(self, source: Path, meta: TaskMeta) -> LabelledSet:
        """Unlabelled (or labelled) images to predict; targets may be zeros."""
        raise NotImplementedError

    def write_predictions(self, out: Path, data: LabelledSet, probs: list[np.ndarray], meta: TaskMeta) -> Path:
        raise NotImplementedError

    def write_probabilities(self, out: Path, data: LabelledSet, probs: list[np.ndarray], meta: TaskMeta) -> Path:
        """Probabilities for ensembles and out-of-fold files; tasks whose predictions are already
        probabilities (attributes submissions, styles PROBS) just write their predictions."""
        return self.write_predictions(out, data, probs, meta)

    def write_truth(self, out: Path, data: LabelledSet, meta: TaskMeta) -> Path | None:
        """The labels of ``data`` in the format ``evaluate`` reads as truth (None when not supported)."""
        return None

    # -- shared verbs ----------------------------------------------------------------------------
    def predict_files(self, weights: Path | list[Path], source: Path, out: Path, tta: str = "none", batch: int = 64,
                      workers: int = 2, device: str = "auto", combine: str = "mean", skip_bad: bool = False) -> Path:
        from .predict import predict_classifier

        return predict_classifier(self, weights, source, out, tta, batch, workers, device, combine, skip_bad)

    def gather_folds(self, cfg: RunConfig, results: list[TrainResult]) -> dict[str, Any]:
        run = Path(cfg.out)
        meta = results[0].meta
        oof_set = LabelledSet.concat([r.val_set for r in results])
        oof_probs = [p for r in results for p in r.val_outputs]
        self.write_probabilities(run / "oof.csv", oof_set, oof_probs, meta)
        self.write_truth(run / "oof_truth.csv", oof_set, meta)
        return {"oof_images": len(oof_set), **self.score(oof_probs, oof_set, meta)}
