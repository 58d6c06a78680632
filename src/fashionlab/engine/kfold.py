"""K-fold training for every task: K models, out-of-fold predictions for every training row, and test
predictions of all K models combined.

RUN/fold<k>/ is a complete run (validated on fold k). The task writes RUN/oof.csv (each training row
predicted by the one model that did not train on it) and RUN/oof_truth.csv and returns the metric over
all OOF rows; RUN/metrics.json holds it with the per-fold values; RUN/test.csv (with ``test:``) is the
folds' prediction of those images. ``--resume RUN`` reuses finished folds and resumes an interrupted one.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import RunConfig, save_config
from ..errors import FashionlabError
from ..io import write_json
from .fit import fit
from .hooks import TrainResult
from .run_files import RunFiles

log = logging.getLogger(__name__)


def fold_config(cfg: RunConfig, k: int) -> RunConfig:
    """The config of fold ``k``: a complete run in RUN/fold<k>/ with its share of the time budget."""
    budget = cfg.time_budget / cfg.folds if cfg.time_budget else 0.0
    return cfg.model_copy(update={"folds": cfg.folds, "fold": k, "out": str(Path(cfg.out) / f"fold{k}"),
                                  "time_budget": budget})


def finished(fold_cfg: RunConfig) -> bool:
    run = Path(fold_cfg.out)
    return (run / "metrics.json").is_file() and (run / "weights" / "best.pt").is_file()


def train_kfold(task: Any, cfg: RunConfig, resume: bool = False) -> TrainResult:
    """``task``: the registry entry (``hooks``, ``rescore``, ``gather_folds``, ``predict_files``)."""
    if cfg.folds < 2:
        raise FashionlabError(f"folds: {cfg.folds}; K-fold needs at least 2")
    files = RunFiles(Path(cfg.out))
    if not resume:
        files.refuse_existing(cfg.exist_ok)
    files.run.mkdir(parents=True, exist_ok=True)
    save_config(cfg, files.config)
    results: list[TrainResult] = []
    for k in range(cfg.folds):
        fold_cfg = fold_config(cfg, k)
        if finished(fold_cfg):
            log.info("fold %d already trained: reusing %s", k, fold_cfg.out)
            results.append(task.rescore(fold_cfg))
        else:
            log.info("fold %d of %d", k + 1, cfg.folds)
            results.append(fit(task.hooks(fold_cfg), resume=resume))
    return gather_folds(task, cfg, results)


def gather_folds(task: Any, cfg: RunConfig, results: list[TrainResult]) -> TrainResult:
    """RUN/oof.csv, oof_truth.csv and metrics.json (and test.csv) from the K fold runs' validation outputs."""
    run = Path(cfg.out)
    scores = task.gather_folds(cfg, results)
    metrics: dict[str, Any] = {"task": task.name, "metric": task.metric, "lower_is_better": not task.higher_is_better,
                               "folds": cfg.folds, **scores, "per_fold": [r.metrics.get(task.metric) for r in results]}
    if cfg.test:
        metrics["test_predictions"] = str(task.predict_files([r.best for r in results], Path(cfg.test),
                                                             run / "test.csv", batch=cfg.batch * 2,
                                                             workers=cfg.workers, device=cfg.device))
    write_json(run / "metrics.json", metrics)
    log.info("K-fold OOF %s = %.4f", task.metric, scores[task.metric])
    return TrainResult(run, results[0].best, metrics, meta=results[0].meta)
