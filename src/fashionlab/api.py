"""The Python API (usable in a notebook); the CLI is a thin layer over these functions."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .config import RunConfig, load_config
from .errors import FashionlabError

EVALUATORS = {
    "attributes": ("fashionlab.tasks.attributes.metric", "evaluate_attributes_files"),
    "classify": ("fashionlab.tasks.classify.evaluate", "evaluate_classify_files"),
    "styles": ("fashionlab.tasks.styles.metric", "evaluate_styles_files"),
    "retrieval": ("fashionlab.tasks.retrieval.metric", "evaluate_retrieval_files"),
    "keypoints": ("fashionlab.tasks.keypoints.metric", "evaluate_keypoints_files"),
}


def train(task: str, config: str | Path | None = None, resume: str | Path | None = None, **overrides: Any):
    """Train ``task``; ``config`` is a YAML file, keyword arguments override it. Returns a TrainResult.

    ``resume=RUN`` continues a killed run from ``RUN/weights/last.ckpt`` with ``RUN/config.yaml``.
    """
    if resume is not None:
        config = Path(resume) / "config.yaml"
        if not config.is_file():
            raise FashionlabError(f"{resume}: not a run folder (no config.yaml) — nothing to resume")
        overrides = {**overrides, "out": str(resume)}
    from .tasks import get_task

    task_obj = get_task(task)
    cfg = load_config(config, cls=task_obj.config_class, task=task, **overrides)
    if cfg.task != task:
        raise FashionlabError(f"{config}: config is for task '{cfg.task}', not '{task}'")
    if not cfg.data:
        raise FashionlabError("no training data: pass --data PATH or set data: in the config")
    _check_data_parallel(cfg)
    return task_obj.fit(cfg, resume=resume is not None)


def _check_data_parallel(cfg: RunConfig) -> None:
    """Data-parallel runs: only the shared classifier loop, one training run per command."""
    if cfg.devices * cfg.nodes == 1:
        return
    if cfg.task not in ("attributes", "classify", "styles"):
        raise FashionlabError(f"--devices/--nodes > 1 is supported for attributes, classify and styles; "
                              f"{cfg.task}: not yet")
    if cfg.folds > 1 or (cfg.task == "attributes" and not cfg.multitask):
        raise FashionlabError("--devices/--nodes > 1 trains one model per command: not with folds or multitask: false")
    from .engine.distributed import check_devices
    from .engine.trainer import resolve_device

    check_devices(cfg, resolve_device(cfg.device))


def lr_find(task: str, config: str | Path | None = None, out: str | Path = "lr_find.png", steps: int = 100,
            **overrides: Any) -> dict[str, Any]:
    """Learning-rate range test on ``task``'s training data; writes a loss-vs-LR plot."""
    from .engine.lr_finder import lr_range_test
    from .tasks import get_task

    cfg = load_config(config, cls=get_task(task).config_class, task=task, **overrides)
    if not cfg.data:
        raise FashionlabError("no training data: pass --data PATH or set data: in the config")
    return lr_range_test(cfg, Path(out), steps=steps)


def predict(task: str, weights: str | Path | list, source: str | Path, out: str | Path, tta: str = "none",
            batch: int = 64, workers: int = 2, device: str = "auto", combine: str = "mean",
            skip_bad: bool = False) -> Path:
    """Predict every image of ``source``; writes the task's own prediction/submission CSV to ``out``.

    ``weights``: a best.pt, a run folder, or a folder of runs (per-task models; several runs of the
    same task are combined: ``combine`` = mean | vote | confidence). ``out`` is checked before any
    work (a folder, a read-only place: one line now, not after predicting everything).
    ``skip_bad``: unreadable images are left out of ``out`` (counted, with a warning), not an error.
    """
    from .io import check_output
    from .tasks import get_task

    task_obj = get_task(task)
    check_output(Path(out))
    paths = [Path(w) for w in weights] if isinstance(weights, (list, tuple)) else [Path(weights)]
    paths = paths[0] if len(paths) == 1 else paths
    extra: dict[str, Any] = {"skip_bad": True} if skip_bad else {}
    if combine != "mean":
        extra["combine"] = combine
    return task_obj.predict_files(paths, Path(source), Path(out), tta, batch, workers, device, **extra)


def evaluate(task: str, pred: str | Path, truth: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Score a prediction file against the truth with the competition's own metric."""
    import importlib

    if task not in EVALUATORS:
        raise FashionlabError(f"unknown task '{task}'; tasks: {', '.join(EVALUATORS)}")
    for path in (pred, truth):
        if not Path(path).is_file():
            raise FashionlabError(f"{path}: no such file")
    module, func = EVALUATORS[task]
    return getattr(importlib.import_module(module), func)(Path(pred), Path(truth), **kwargs)


def synth(task: str, out: str | Path, **kwargs: Any) -> Path:
    from .data.synth import synth as make

    return make(task, Path(out), **kwargs)


def report(run: str | Path) -> Path:
    from .engine.report import write_report

    return write_report(Path(run))


def demo(out: str | Path = "runs/demo", time_budget: float = 150.0) -> dict[str, Any]:
    """The main job on embedded data: synth FashionAI attributes, train, evaluate, submit, report."""
    out = Path(out)
    started = time.perf_counter()
    data = synth("attributes", out / "data", n_per_task=120, size=96, seed=0)
    result = train("attributes", data=str(data), out=str(out / "run"), imgsz=96, batch=32,
                   time_budget=time_budget, head_epochs=40)
    submission = predict("attributes", result.best, data / "Annotations" / "label.csv",
                         out / "submission.csv", tta="flip")
    scores = evaluate("attributes", submission, data / "Annotations" / "label.csv")
    val_scores = {k: result.metrics[k] for k in ("map", "accuracy") if k in result.metrics}
    page = report(result.run)
    return {"data": str(data), "run": str(result.run), "weights": str(result.best), "submission": str(submission),
            "report": str(page), "val": val_scores, "all_rows_flip_tta": scores,
            "seconds": round(time.perf_counter() - started, 1)}


__all__ = ["RunConfig", "demo", "evaluate", "predict", "report", "synth", "train"]
