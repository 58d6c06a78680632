"""``fashionlab sweep CONFIG.yaml``: folds x backbones x hyper-parameters as Ray Tune trials.

Every trial is one run (a fold of a combination, or the combination itself without folds) trained
in a Ray worker process. After Tune, the driver gathers each complete combination's folds into a
K-fold run folder SWEEP_OUT/<combination>/ (oof.csv, oof_truth.csv, metrics.json, test.csv: what
``fashionlab ensemble`` reads) and writes SWEEP_OUT/results.csv/.md and summary.csv. Each trial's
outcome is kept in RUN/sweep_trial.json, so a re-run skips finished (and early-stopped) trials.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .config import save_config
from .errors import FashionlabError
from .io import atomic_open, write_json, write_text
from .sweep_config import Combination, SweepSpec, Trial, expand, read_sweep, trials_of

log = logging.getLogger(__name__)
RECORD = "sweep_trial.json"


def _import_ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise FashionlabError("fashionlab sweep needs Ray: pip install 'fashionlab[sweep]'") from None
    return ray, tune


def run_trial(config: dict[str, Any]) -> None:
    """The Ray trainable: train one run, reporting ``metric`` and ``epoch`` after every fine-tune epoch."""
    import torch
    from ray import tune

    from .engine.fit import fit
    from .engine.progress import epoch_listener
    from .tasks import get_task

    spec = config["trial"]
    torch.set_num_threads(max(1, int(spec["threads"])))
    task = get_task(spec["task"])
    cfg = task.config_class(**{**spec["cfg"], "exist_ok": True})  # the sweep owns its trial folders
    Path(cfg.out, RECORD).unlink(missing_ok=True)
    started = time.perf_counter()

    def report(epoch: int, metric: float, train_loss: float) -> None:
        tune.report({"metric": metric, "epoch": epoch, "train_loss": train_loss})

    with epoch_listener(report):
        result = fit(task.hooks(cfg)) if spec["fold"] is not None else task.fit(cfg)
    results = result if isinstance(result, list) else [result]
    best = results[0].metrics.get(task.metric) if len(results) == 1 else None
    write_json(Path(cfg.out) / RECORD, {"status": "done", "best": best, "seconds": round(time.perf_counter() - started, 1)})


def _finished(trial: Trial) -> bool:
    from .engine.kfold import finished

    return finished(trial.cfg)


def _record(trial: Trial) -> dict[str, Any] | None:
    path = Path(trial.cfg.out) / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _history_epochs(trial: Trial) -> int:
    path = Path(trial.cfg.out) / "state.json"
    rows = json.loads(path.read_text(encoding="utf-8")).get("history", []) if path.is_file() else []
    return sum(1 for r in rows if isinstance(r, dict) and r.get("stage") == "finetune")


def _start_ray(ray, spec: SweepSpec, address: str | None, verbose: bool) -> bool:
    """Connect to (or start) Ray; True when this call started it and must shut it down."""
    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, logging_level=logging.INFO if verbose else logging.WARNING,
                 log_to_driver=verbose, configure_logging=True)
    if address:
        ray.init(address=address, logging_level=quiet["logging_level"], log_to_driver=verbose)
    else:
        ray.init(num_cpus=spec.num_cpus or os.cpu_count() or 1, **quiet)
    return True


def _scheduler(tune, spec: SweepSpec, max_epochs: int):
    stop = spec.early_stop
    if stop.scheduler == "asha":
        # max_t past the last epoch: ASHA stops a trial that reaches max_t, which would kill it before it
        # writes its metrics and predictions
        return tune.schedulers.ASHAScheduler(time_attr="training_iteration", max_t=max_epochs + 1,
                                             grace_period=stop.grace_epochs, reduction_factor=stop.reduction_factor)
    if stop.scheduler == "median":
        return tune.schedulers.MedianStoppingRule(time_attr="training_iteration", grace_period=stop.grace_epochs,
                                                  min_samples_required=2)
    return None


def _run_tune(trials: list[Trial], spec: SweepSpec, out: Path, address: str | None, verbose: bool) -> None:
    ray, tune = _import_ray()
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # paths are absolute anyway; keep the cwd
    started = _start_ray(ray, spec, address, verbose)
    try:
        from .tasks import get_task

        task = get_task(trials[0].cfg.task)
        mode = "max" if task.higher_is_better else "min"
        threads = max(1, int(spec.resources.cpu))
        specs = [{"name": t.name, "task": t.cfg.task, "fold": t.fold, "threads": threads, "cfg": t.cfg.model_dump()}
                 for t in trials]
        resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
        max_epochs = max((t.cfg.epochs if t.cfg.epochs is not None else 10) for t in trials)
        tuner = tune.Tuner(
            tune.with_resources(run_trial, resources),
            param_space={"trial": tune.grid_search(specs)},
            tune_config=tune.TuneConfig(
                metric="metric", mode=mode, scheduler=_scheduler(tune, spec, max_epochs),
                max_concurrent_trials=spec.max_concurrent or None,
                trial_name_creator=lambda t: t.config["trial"]["name"].replace("/", "-"),
                trial_dirname_creator=lambda t: t.config["trial"]["name"].replace("/", "-")),
            run_config=tune.RunConfig(name="tune", storage_path=str((out / "ray").resolve()), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        grid = tuner.fit()
        log.info("sweep: Tune finished")
        by_name = {t.name: t for t in trials}
        for result in grid:
            trial = by_name[result.config["trial"]["name"]]
            if _finished(trial) and _record(trial):
                continue
            frame = result.metrics_dataframe
            reported = frame["metric"].dropna() if frame is not None and "metric" in frame else []
            record = {"status": "error" if result.error else "stopped",
                      "best": float(max(reported) if mode == "max" else min(reported)) if len(reported) else None,
                      "epochs": int(len(reported)),
                      "seconds": round(float((result.metrics or {}).get("time_total_s", 0.0)), 1)}
            if result.error:
                record["error"] = str(result.error).strip().splitlines()[-1][:300]
            write_json(Path(trial.cfg.out) / RECORD, record)
    finally:
        if started:
            ray.shutdown()
            log.info("sweep: Ray shut down")


def _gather(combo: Combination, trials: list[Trial], trained: set[str]) -> dict[str, Any] | None:
    """The combination's OOF files and metrics when every fold is done (None otherwise)."""
    from .engine.kfold import gather_folds
    from .tasks import get_task

    if combo.cfg.folds < 2:
        return None
    metrics_path = Path(combo.cfg.out) / "metrics.json"
    if (Path(combo.cfg.out) / "oof.csv").is_file() and metrics_path.is_file() and \
            not any(t.name in trained for t in trials):
        return json.loads(metrics_path.read_text(encoding="utf-8"))
    task = get_task(combo.cfg.task)
    save_config(combo.cfg, Path(combo.cfg.out) / "config.yaml")
    return gather_folds(task, combo.cfg, [task.rescore(t.cfg) for t in trials]).metrics


def _row(trial: Trial, metric: str, keys: list[str]) -> dict[str, Any]:
    record = _record(trial) or {}
    status = "done" if _finished(trial) else record.get("status", "pending")
    best = record.get("best")
    if status == "done" and best is None:
        best = json.loads((Path(trial.cfg.out) / "metrics.json").read_text(encoding="utf-8")).get(metric)
    epochs = record.get("epochs") if status != "done" else _history_epochs(trial)
    return {"trial": trial.name, "combination": trial.combination.name, "backbone": trial.combination.backbone,
            **{k: trial.combination.hparams.get(k, "") for k in keys},
            "fold": "" if trial.fold is None else trial.fold, "status": status,
            "best": "" if best is None else round(float(best), 4), "epochs": epochs if epochs is not None else "",
            "seconds": record.get("seconds", ""), "error": record.get("error", "")}


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _markdown(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def run_sweep(config: Path, out: Path | None = None, address: str | None = None,
              overrides: dict[str, Any] | None = None, verbose: bool = False) -> dict[str, Any]:
    """Run (or resume) a sweep; returns {"out", "results", "summary", "trained", "skipped"}."""
    from .tasks import get_task

    base, spec = read_sweep(Path(config), overrides or {})
    out = Path(out or base.pop("out", None) or Path("runs/sweep") / Path(config).stem).resolve()
    base.pop("out", None)
    combos = expand(Path(config), base, spec, out)
    trials = trials_of(combos)
    task = get_task(combos[0].cfg.task)
    metric, sign = task.metric, (1 if task.higher_is_better else -1)
    todo = [t for t in trials if not _finished(t) and (_record(t) or {}).get("status") != "stopped"]
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", {"config": str(Path(config).resolve()), "spec": spec.model_dump(),
                                    "combinations": [c.name for c in combos], "trials": len(trials)})
    log.info("sweep: %d combination(s), %d trial(s), %d to run", len(combos), len(trials), len(todo))
    if todo:
        _run_tune(todo, spec, out, address or spec.address, verbose)
    keys = sorted({k for c in combos for k in c.hparams})
    rows = [_row(t, metric, keys) for t in trials]
    _write_table(out / "results.csv", rows)
    trained = {t.name for t in todo}
    summary = []
    for combo in combos:
        mine = [t for t in trials if t.combination is combo]
        done = [r for r in rows if r["combination"] == combo.name and r["status"] == "done"]
        complete = len(done) == len(mine)
        gathered = _gather(combo, mine, trained) if complete else None
        if gathered is not None:
            value = gathered.get(metric)
        else:
            value = done[0]["best"] if complete and combo.cfg.folds < 2 else None
        summary.append({"combination": combo.name, "backbone": combo.backbone,
                        **{k: combo.hparams.get(k, "") for k in keys}, "folds_done": f"{len(done)}/{len(mine)}",
                        "status": "complete" if complete else "incomplete",
                        ("oof_" if combo.cfg.folds >= 2 else "val_") + metric: "" if value is None else round(value, 4),
                        "run": str(Path(combo.cfg.out))})
    value_key = list(summary[0])[-2]
    summary.sort(key=lambda s: -(sign * s[value_key] if s[value_key] != "" else -1e9))  # best first
    _write_table(out / "summary.csv", summary)
    write_text(out / "results.md", f"# Sweep {Path(config).name}\n\n## Combinations (by {value_key})\n\n"
               + _markdown(summary) + "\n## Trials\n\n" + _markdown(rows))
    return {"out": out, "results": rows, "summary": summary, "trained": len(todo), "skipped": len(trials) - len(todo)}
