"""The Python API (usable in a notebook); the CLI is a thin layer over these functions, one per verb.

Layers point one way: cli -> api -> (serve, sweep, ensemble) -> tasks -> engine -> models / data / config.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .config import RunConfig, load_config
from .errors import FashionlabError


def _task(name: str):
    from .tasks import get_task

    return get_task(name)


def config(task: str, path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """The validated config of ``task`` (YAML file < keyword overrides); an option of another task, or
    none at all, is a one-line error."""
    from .tasks import TASKS

    task_obj = _task(task)
    others = {name: _task(name).config_class for name in TASKS if name != task}
    cfg = load_config(path, cls=task_obj.config_class, others=others, task=task, **overrides)
    if cfg.task != task:
        raise FashionlabError(f"{path}: config is for task '{cfg.task}', not '{task}'")
    return cfg


def train(task: str, config_path: str | Path | None = None, resume: str | Path | None = None, **overrides: Any):
    """Train ``task``; ``config_path`` is a YAML file, keyword arguments override it. Returns a TrainResult
    (a list of them for attributes with ``multitask: false``).

    ``resume=RUN`` continues a stopped run from ``RUN/weights/last.ckpt`` with ``RUN/config.yaml``; a new
    ``time_budget`` given with it bounds the resumed command (the remaining epochs are re-planned).
    """
    if resume is not None:
        config_path = Path(resume) / "config.yaml"
        if not config_path.is_file():
            raise FashionlabError(f"{resume}: not a run folder (no config.yaml) — nothing to resume")
        overrides = {**overrides, "out": str(resume)}
    task_obj = _task(task)
    cfg = config(task, config_path, **overrides)
    if not cfg.data:
        raise FashionlabError("no training data: pass --data PATH or set data: in the config")
    _check_data_parallel(cfg)
    return task_obj.fit(cfg, resume=resume is not None)


def count_budget_from(start: float) -> None:
    """Make the next ``train``'s time budget count from ``start`` (a ``time.perf_counter()`` value)."""
    from .engine.budget import count_budget_from as set_start

    set_start(start)


def _check_data_parallel(cfg: RunConfig) -> None:
    """Data-parallel runs: one training run per command."""
    if cfg.devices * cfg.nodes == 1:
        return
    if cfg.folds > 1 or getattr(cfg, "multitask", True) is False:
        raise FashionlabError("--devices/--nodes > 1 trains one model per command: not with folds or multitask: false")
    from .engine.devices import resolve_device
    from .engine.distributed import check_devices

    check_devices(cfg, resolve_device(cfg.device))


def lr_find(task: str, config_path: str | Path | None = None, out: str | Path = "lr_find.png", steps: int = 100,
            **overrides: Any) -> dict[str, Any]:
    """Learning-rate range test with ``task``'s own training step; writes a loss-vs-LR plot."""
    from .engine.lr_finder import lr_range_test

    cfg = config(task, config_path, **overrides)
    if not cfg.data:
        raise FashionlabError("no training data: pass --data PATH or set data: in the config")
    return lr_range_test(_task(task).hooks(cfg), Path(out), steps=steps)


def predict(task: str, weights: str | Path | list, source: str | Path, out: str | Path, tta: str | None = None,
            batch: int = 64, workers: int = 2, device: str = "auto", combine: str | None = None,
            skip_bad: bool = False) -> Path:
    """Predict every image of ``source``; writes the task's own prediction/submission CSV to ``out``.

    ``tta``: test-time views averaged (default: the task's, flip — the photo and its mirror).
    ``weights``: a best.pt, a run folder, or a folder of runs (per-task models); several are combined by
    ``combine`` (default: the task's first way, e.g. ``mean``; classifiers also ``vote``/``confidence``).
    ``out`` is checked before any work (a folder, a read-only place: one line now, not after predicting
    everything). ``skip_bad``: unreadable images are left out of ``out`` (counted, with a warning).
    """
    from .io import check_output

    task_obj = _task(task)
    tta = tta or task_obj.predict_tta
    check_output(Path(out))
    paths = [Path(w) for w in weights] if isinstance(weights, (list, tuple)) else [Path(weights)]
    combine = combine or task_obj.combine[0]
    task_obj.check_predict(tta, combine, len(paths))
    target = paths[0] if len(paths) == 1 else paths
    return task_obj.predict_files(target, Path(source), Path(out), tta, batch, workers, device, combine, skip_bad)


def submit(task: str, weights: str | Path | list, source: str | Path, out: str | Path, tta: str | None = None,
           **options: Any) -> Path:
    """The competition submission: ``predict`` with the task's submission TTA by default (10-crop for
    the classifiers, flip for keypoints and retrieval)."""
    return predict(task, weights, source, out, tta=tta or _task(task).submit_tta, **options)


def evaluate(task: str, pred: str | Path, truth: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Score a prediction file against the truth with the competition's own metric."""
    task_obj = _task(task)
    for path in (pred, truth):
        if not Path(path).is_file():
            raise FashionlabError(f"{path}: no such file")
    return task_obj.evaluate_files(Path(pred), Path(truth), **kwargs)


def synth(task: str, out: str | Path, n: int | None = None, **kwargs: Any) -> Path:
    """Generate ``task``'s embedded synthetic set under ``out``; ``n`` is its size (images, images per
    attribute task, or items for retrieval)."""
    task_obj = _task(task)
    if n is not None:
        kwargs[task_obj.synth_count_arg] = n
    return task_obj.synth(Path(out), **kwargs)


def convert(source: str | Path, from_: str, to: str, out: str | Path, **options: Any) -> Any:
    """Convert a public dataset (``from_``: deepfashion2, deepfashion-landmark, deepfashion-inshop, deepfashion-c2s,
    deepfashion-attributes, fashionpedia, coco-keypoints) to task ``to``'s format under ``out``. Returns the
    ``Summary`` (also ``out/convert_summary.json``); options: see ``fashionlab.convert`` and the README."""
    from .convert import convert as run

    return run(source, from_, to, out, **options)


def report(run: str | Path) -> Path:
    from .engine.report import write_report

    return write_report(Path(run))


def index(task: str, weights: str | Path | list, gallery: str | Path, out: str | Path, kind: str = "flat",
          fusion: str = "concat", tta: str = "flip", device: str = "auto", skip_bad: bool = False) -> Path:
    """Embed a gallery (items CSV shop rows, or a folder) and build a FAISS index (retrieval)."""
    _only(task, "retrieval")
    from .tasks.retrieval.search import build_index

    weights = [Path(w) for w in weights] if isinstance(weights, (list, tuple)) else Path(weights)
    return build_index(weights, Path(gallery), Path(out), kind=kind, fusion=fusion, tta=tta, device=device,
                       skip_bad=skip_bad)


def search(task: str, index_dir: str | Path, query: str | Path, top: int = 10, out: str | Path | None = None,
           category: str | None = None, device: str = "auto", skip_bad: bool = False, rerank: str = "qe") -> list:
    """Rank an index's gallery for each query image: [(query_id, ids, scores), ...] (retrieval).
    ``rerank``: qe (query expansion within the batch) | k-reciprocal | none."""
    _only(task, "retrieval")
    from .tasks.retrieval.search import search as run_search

    return run_search(Path(index_dir), Path(query), top=top, out=Path(out) if out else None, category=category,
                      device=device, skip_bad=skip_bad, rerank=rerank)


def thresholds(task: str, pred: str | Path, truth: str | Path, out: str | Path = "thresholds.json",
               method: str = "greedy") -> dict[str, Any]:
    """Per-label thresholds maximising sample F2 on ``pred`` vs ``truth`` (styles)."""
    _only(task, "styles")
    from .tasks.styles.thresholds import tune_thresholds_files

    return tune_thresholds_files(Path(pred), Path(truth), Path(out), method)


def ensemble(task: str, preds: list, out: str | Path, method: str = "mean", truth: str | Path | None = None,
             weights: list[float] | None = None, test: list | None = None, test_out: str | Path | None = None,
             corr_threshold: float = 0.9, top_n: int = 2, thresholds_json: list | None = None) -> dict[str, Any]:
    """Combine several runs' probability CSVs (mean, weighted, vote, top_n, stack) with correlation pruning."""
    from .ensemble import ensemble_files

    return ensemble_files([Path(p) for p in preds], Path(out), method, Path(truth) if truth else None, weights,
                          [Path(t) for t in test] if test else None, Path(test_out) if test_out else None,
                          corr_threshold, top_n, task, [Path(t) for t in thresholds_json] if thresholds_json else None)


def export(weights: str | Path, out: str | Path | None = None, fmt: str = "onnx", opset: int = 17,
           check: bool = True) -> dict[str, Any]:
    """Export one classifier weights file to ONNX (checked against PyTorch); returns a summary."""
    if fmt != "onnx":
        raise FashionlabError(f"export format '{fmt}' is not supported; formats: onnx")
    from .engine.checkpoint import weights_files
    from .engine.export import export_onnx
    from .serve.adapters import weights_format
    from .tasks import all_tasks, task_for_format

    files = weights_files(Path(weights))
    if len(files) != 1:
        raise FashionlabError(f"{weights}: holds {len(files)} models; export one best.pt at a time")
    owner = task_for_format(weights_format(files[0]))
    if owner is not None and not owner.exportable:
        exportable = ", ".join(t.name for t in all_tasks() if t.exportable)
        raise FashionlabError(f"{files[0]}: ONNX export is for {exportable} models, not {owner.name}")
    return export_onnx(files[0], Path(out) if out else files[0].with_suffix(".onnx"), opset=opset, check=check)


def service(weights: list | None = None, index: str | Path | None = None, **options: Any):
    """The FastAPI app serving ``weights`` (and a retrieval ``index``); run it with uvicorn."""
    try:
        from .serve import create_app
    except ImportError as exc:
        raise FashionlabError(f"serving needs FastAPI and uvicorn ({exc.name} is missing): "
                              "pip install 'fashionlab[serve]'") from None
    return create_app(list(weights or []), index=index, **options)


def sweep(config_path: str | Path, out: str | Path | None = None, address: str | None = None,
          overrides: dict[str, Any] | None = None, verbose: bool = False) -> dict[str, Any]:
    """Folds x backbones x hyper-parameters as Ray Tune trials; gathered OOF files per combination."""
    from .sweep import run_sweep

    return run_sweep(Path(config_path), out=Path(out) if out else None, address=address, overrides=overrides,
                     verbose=verbose)


def preview_recolour(source: str | Path, out: str | Path = "recolour.png", variants: int = 4,
                     masks: str | Path | None = None, seed: int = 0, max_images: int = 8) -> Path:
    """PNG grid: original, garment mask, recoloured variants (the styles augmentation)."""
    from .data.recolour import preview_recolour as make_grid

    return make_grid(Path(source), Path(out), variants, Path(masks) if masks else None, seed, max_images=max_images)


def _only(task: str, expected: str) -> None:
    if task != expected:
        raise FashionlabError(f"this verb is for the {expected} task, not '{task}'")


def demo(out: str | Path = "runs/demo", time_budget: float = 150.0) -> dict[str, Any]:
    """The main job on embedded data: synth FashionAI attributes, train, evaluate, submit, report."""
    out = Path(out)
    started = time.perf_counter()
    data = synth("attributes", out / "data", n_per_task=120, size=96, seed=0)
    result = train("attributes", data=str(data), out=str(out / "run"), imgsz=96, batch=32,
                   time_budget=time_budget, head_epochs=40, exist_ok=True)
    submission = predict("attributes", result.best, data / "Annotations" / "label.csv",
                         out / "submission.csv", tta="flip")
    scores = evaluate("attributes", submission, data / "Annotations" / "label.csv")
    val_scores = {k: result.metrics[k] for k in ("map", "accuracy") if k in result.metrics}
    page = report(result.run)
    return {"data": str(data), "run": str(result.run), "weights": str(result.best), "submission": str(submission),
            "report": str(page), "val": val_scores, "all_rows_flip_tta": scores,
            "seconds": round(time.perf_counter() - started, 1)}


__all__ = ["RunConfig", "config", "convert", "demo", "ensemble", "evaluate", "export", "index", "lr_find", "predict",
           "preview_recolour", "report", "search", "service", "submit", "sweep", "synth", "thresholds", "train"]
