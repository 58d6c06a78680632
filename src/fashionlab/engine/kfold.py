"""K-fold training: K models, out-of-fold probabilities for every training image, averaged test predictions.

RUN/fold<k>/ is a complete run (validated on fold k). RUN/oof.csv holds each training image's
probabilities from the one model that did not train on it; RUN/oof_truth.csv its labels;
RUN/metrics.json the task's metric on the whole OOF set; RUN/test.csv (with ``test:``) the mean of
the K models' predictions. A finished fold is not trained again when the command is re-run.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import RunConfig, save_config
from ..errors import FashionlabError
from ..io import write_json
from ..tasks.base import LabelledSet, Task
from .trainer import TrainResult, train

log = logging.getLogger(__name__)


def fold_config(cfg: RunConfig, k: int) -> RunConfig:
    """The config of fold ``k``: a complete run in RUN/fold<k>/ with its share of the time budget."""
    budget = cfg.time_budget / cfg.folds if cfg.time_budget else 0.0
    return cfg.model_copy(update={"folds": cfg.folds, "fold": k, "out": str(Path(cfg.out) / f"fold{k}"),
                                  "time_budget": budget})


def finished(fold_cfg: RunConfig) -> bool:
    run = Path(fold_cfg.out)
    return (run / "metrics.json").is_file() and (run / "weights" / "best.pt").is_file()


def rescore(task: Task, fold_cfg: RunConfig) -> TrainResult:
    """Rebuild a finished fold's validation predictions from its best checkpoint."""
    import json

    from .checkpoint import load_weights
    from .predictor import predict_probs
    from .trainer import resolve_device

    _, val_set, meta = task.load_train(fold_cfg)
    device = resolve_device(fold_cfg.device)
    loaded = load_weights(Path(fold_cfg.out) / "weights" / "best.pt", device)
    probs = predict_probs(loaded.net, val_set, loaded.imgsz, loaded.mean, loaded.std, "none", fold_cfg.batch * 2,
                          fold_cfg.workers, device, task.multilabel)
    metrics = json.loads((Path(fold_cfg.out) / "metrics.json").read_text(encoding="utf-8"))
    return TrainResult(Path(fold_cfg.out), Path(fold_cfg.out) / "weights" / "best.pt", metrics, val_set, probs, meta)


def train_kfold(task: Task, cfg: RunConfig, resume: bool = False) -> TrainResult:
    if cfg.folds < 2:
        raise FashionlabError(f"folds: {cfg.folds}; K-fold needs at least 2")
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run / "config.yaml")
    results: list[TrainResult] = []
    for k in range(cfg.folds):
        fold_cfg = fold_config(cfg, k)
        if finished(fold_cfg):
            log.info("fold %d already trained: reusing %s", k, fold_cfg.out)
            results.append(rescore(task, fold_cfg))
        else:
            log.info("fold %d of %d", k + 1, cfg.folds)
            results.append(train(fold_cfg, resume=resume))
    return gather_folds(task, cfg, results)


def gather_folds(task: Task, cfg: RunConfig, results: list[TrainResult]) -> TrainResult:
    """RUN/oof.csv, oof_truth.csv, metrics.json (and test.csv) from the K fold runs' validation predictions."""
    run = Path(cfg.out)
    meta = results[0].meta
    oof_set = LabelledSet.concat([r.val_set for r in results])
    oof_probs = [p for r in results for p in r.val_probs]
    task.write_probabilities(run / "oof.csv", oof_set, oof_probs, meta)
    task.write_truth(run / "oof_truth.csv", oof_set, meta)
    scores: dict[str, Any] = task.score(oof_probs, oof_set, meta)
    metrics = {"task": task.name, "metric": task.metric, "folds": cfg.folds, "oof_images": len(oof_set), **scores,
               "per_fold": [r.metrics.get(task.metric) for r in results]}
    weights = [r.best for r in results]
    if cfg.test:
        metrics["test_predictions"] = str(task.predict_files(weights, Path(cfg.test), run / "test.csv",
                                                             batch=cfg.batch * 2, workers=cfg.workers,
                                                             device=cfg.device))
    write_json(run / "metrics.json", metrics)
    log.info("K-fold OOF %s = %.4f over %d images", task.metric, scores[task.metric], len(oof_set))
    return TrainResult(run, results[0].best, metrics, oof_set, oof_probs, meta)
