"""``fit``: the one training loop every task runs, inside a time budget, resumable, on 1..N processes.

Order of work: read the data (bad data leaves no run folder behind), pick the image size, build the
model, probe the training speed, optionally shrink the image size and run the task's head stage,
plan the epochs that fit the budget, then fine-tune with Lightning. After each validated epoch the
best weights (in the metric's own direction) go to ``RUN/weights/best.pt``, the k best to
``weights/epochN.pt``, progress to ``state.json``, and the plan is re-made from measured epoch times.
SIGTERM or Ctrl-C stop after the current batch with ``last.ckpt`` intact and a one-line resume hint.
"""
from __future__ import annotations

import copy
import logging
import math
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import save_config
from ..errors import FashionlabError
from ..io import write_json
from . import distributed as dist
from .budget import Replanner, budget_clock_start, plan_epochs
from .callbacks import EpochEnd, build_callbacks, build_trainer, unfreeze_last
from .devices import resolve_device
from .hooks import FitHooks, TrainResult, move_to
from .image_size import native_size, size_for_budget, size_for_budget_and_head, size_for_photos
from .predictor import make_loader
from .progress import notify_epoch
from .run_files import RunFiles
from .signals import RunStopped, stop_on_signals

log = logging.getLogger(__name__)
# best.pt lives beside Lightning's last.ckpt on purpose; the pytree notice is Lightning's own business
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")  # freeze_bn, on purpose
warnings.filterwarnings("ignore", message=r"torch.distributed.nn.functional.all_gather is deprecated")  # Lightning's


def probe_train_speed(net: torch.nn.Module, loader, loss_step: Callable[[torch.nn.Module, Any], tuple], device: str,
                      batches: int = 4, warmup: int = 1, frozen_fraction: float = 0.0) -> float:
    """Seconds per training image, measured on a throw-away copy (the first batches are warm-up).

    ``loss_step(trial_net, batch) -> (loss, n_images)`` is the task's own training step.
    ``frozen_fraction``: the earliest share of backbone tensors the run keeps frozen (no backward
    pass through them: 45 -> 68 train img/s at 128 px for efficientnet_lite0 with 0.3, measured by
    ``benchmarks/backbone_probe.py speed``).
    """
    trial = copy.deepcopy(net).to(device).train()
    if frozen_fraction > 0:
        unfreeze_last(trial.backbone, 1 - frozen_fraction)
    optimizer = torch.optim.AdamW([p for p in trial.parameters() if p.requires_grad], lr=1e-6)
    times, seen = [], []
    clock = time.perf_counter()
    for i, batch in enumerate(loader):
        loss, n_images = loss_step(trial, move_to(batch, device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        now = time.perf_counter()
        if i >= warmup:
            times.append(now - clock)
            seen.append(n_images)
        clock = now
        if i >= batches - 1:
            break
    del trial
    return sum(times) / max(1, sum(seen)) if seen else 0.0


def checkpoint_epochs(path: Path) -> int:
    """Fine-tune epochs finished in a Lightning checkpoint; a truncated or corrupt file is a one-line error."""
    from .checkpoint_io import AtomicCheckpointIO

    return int(AtomicCheckpointIO().load_checkpoint(path, map_location="cpu").get("epoch", -1)) + 1


@torch.no_grad()
def validate(net: torch.nn.Module, hooks: FitHooks, loader, device: str) -> float:
    """The task's metric of ``net`` on the whole validation loader (outside Lightning)."""
    import numpy as np

    net.eval().to(device)
    out: np.ndarray | None = None
    for batch in loader:
        index, outputs = hooks.val_step(net, move_to(batch, device))
        if out is None:
            out = np.zeros((hooks.n_val, *outputs.shape[1:]), dtype=np.float32)
        out[index.cpu().numpy()] = outputs.float().cpu().numpy()
    return float(hooks.score(out)) if out is not None else float("nan")


def fit(hooks: FitHooks, resume: bool = False) -> TrainResult:
    """Train one model of a task; returns where its weights and outputs are."""
    cfg = hooks.cfg
    started = budget_clock_start()
    import lightning.pytorch as pl

    pl.seed_everything(cfg.seed, verbose=False)
    files = RunFiles(Path(cfg.out))
    rank = dist.global_rank(cfg)
    hooks.load_data()  # before the run folder exists: bad data leaves nothing behind
    if not resume and not rank:
        files.refuse_existing(cfg.exist_ok)
    handoff = dist.read_handoff(files.run) if rank else None  # the other ranks start where rank 0 is at fit
    if handoff:
        cfg.imgsz = handoff["imgsz"]
        log.info("data-parallel: rank %d of %d joined", rank, dist.world_size(cfg))
    resuming = resume and files.last_ckpt.is_file()
    if resume and not resuming and not rank:
        log.warning("%s: nothing to resume, starting from the beginning", files.last_ckpt)
    state = files.read_state() if resuming else {}  # progress of a run that has a checkpoint to go on from
    if resuming:  # epochs validated after last.ckpt was written are trained again: forget them
        done = checkpoint_epochs(files.last_ckpt)
        state["history"] = [r for r in state.get("history", []) if r["stage"] != "finetune" or r["epoch"] <= done]
    auto_size = state.get("auto_size", cfg.imgsz is None) if resuming else cfg.imgsz is None and hooks.auto_size
    if cfg.imgsz is None:
        cfg.imgsz = size_for_photos(native_size(hooks.train_paths(), seed=cfg.seed))
        log.info("image size %d (from the photos' own size)", cfg.imgsz)
    hooks.check_imgsz(cfg.imgsz)
    if not hooks.n_val and cfg.patience:
        raise FashionlabError("patience (early stopping) needs a validation set; set val_fraction > 0 or --val-data")
    device = resolve_device(cfg.device)
    net = hooks.build_model()
    if handoff:
        net.load_state_dict(handoff["state_dict"])
    created = not files.run.exists()
    if not rank:
        files.prepare()
    try:
        return _train(hooks, net, files, rank, handoff, resuming, state, auto_size, device, started)
    except BaseException:
        if created and not rank and not any(files.weights.glob("*")):  # a failed start leaves no empty run
            shutil.rmtree(files.run, ignore_errors=True)
        raise


def _train(hooks: FitHooks, net: torch.nn.Module, files: RunFiles, rank: int, handoff: dict | None, resuming: bool,
           state: dict, auto_size: bool, device: str, started: float) -> TrainResult:
    cfg = hooks.cfg
    from .lit import LitTask

    if not rank:
        save_config(cfg, files.config)
        write_json(files.run / "data.json", hooks.data_summary())
    higher = hooks.higher_is_better

    def better(a: float, b: float) -> bool:
        return a > b if higher else a < b

    best = {"metric": state.get("best_metric", -math.inf if higher else math.inf)}
    history: list[dict] = list(state.get("history", []))
    stage_size: dict[str, int] = {}  # where a stage's weights predict, when not at imgsz

    def info(metric: float, stage: str, epoch: int) -> dict[str, Any]:
        return {"metric": hooks.metric, "value": None if math.isnan(metric) else metric, "lower_is_better": not higher,
                "stage": stage,
                "epoch": epoch, "train_imgsz": stage_size.get(stage, cfg.imgsz)}  # the tail trains at tail_imgsz

    def save_if_best(metric: float, stage: str, epoch: int) -> bool:
        if not better(metric, best["metric"]):
            return False
        best["metric"] = metric
        size = stage_size.get(stage) or (cfg.imgsz if stage in ("head", "init") else hooks.eval_imgsz(cfg.imgsz))
        hooks.save_weights(files.best, net, size, info(metric, stage, epoch))
        return True

    top_k: list[tuple[float, Path]] = [(r["val_metric"], files.weights / f"epoch{r['epoch']}.pt") for r in history
                                       if r["stage"] == "finetune" and (files.weights / f"epoch{r['epoch']}.pt").is_file()]

    def keep_top_k(metric: float, epoch: int) -> None:
        """Keep the k best fine-tune epochs as weights/epochN.pt, for checkpoint ensembles."""
        worst = min(top_k, key=lambda item: item[0] if higher else -item[0]) if top_k else None
        if len(top_k) >= cfg.save_top_k and worst is not None and not better(metric, worst[0]):
            return
        path = files.weights / f"epoch{epoch}.pt"
        hooks.save_weights(path, net, hooks.eval_imgsz(cfg.imgsz), info(metric, "finetune", epoch))
        top_k.append((metric, path))
        top_k.sort(key=lambda item: -item[0] if higher else item[0])
        for _, dropped in top_k[cfg.save_top_k:]:
            dropped.unlink(missing_ok=True)
        del top_k[cfg.save_top_k:]

    world = dist.world_size(cfg)  # each rank trains and validates its own shard

    def loaders():
        train_ds, val_ds = hooks.datasets(cfg.imgsz)
        train_loader = hooks.train_loader(train_ds, rank, world)
        if train_loader is None:
            shard = dist.sampler(train_ds, cfg, rank, shuffle=True)
            train_loader = make_loader(train_ds, cfg.batch, cfg.workers, drop_last=len(shard) > cfg.batch, sampler=shard)
        val_shard = dist.sampler(val_ds, cfg, rank, shuffle=False) if world > 1 else None
        return train_loader, make_loader(val_ds, cfg.batch * 2, cfg.workers, sampler=val_shard)

    train_loader, val_loader = loaders()
    infer_s = state.get("infer_s_per_image", 0.0)
    n_val = -(-hooks.n_val // world)

    def n_train() -> int:
        return len(train_loader) * cfg.batch  # images per epoch per rank (P×K loaders define their own)

    # a head stage that takes the whole budget by design leaves nothing to probe or plan
    share = hooks.head_stage_share() if cfg.time_budget > 0 and not resuming and not handoff else 0.0
    train_s = 0.0
    if cfg.time_budget > 0 and not resuming and not handoff and share < 1:
        train_s = probe_train_speed(net, train_loader, hooks.loss_step, device, frozen_fraction=cfg.frozen_fraction)
        if auto_size:  # settle the size before the head stage's feature pass, which costs as much as it
            epoch_s = n_train() * train_s + n_val * train_s / 3
            left = (cfg.time_budget - (time.perf_counter() - started) - n_val * train_s / 3 - 5.0) * 0.9
            size = size_for_budget_and_head(cfg.imgsz, left, epoch_s, hooks.head_stage_s(train_s), cfg.min_epochs)
            if size != cfg.imgsz:
                log.info("image size %d -> %d so that the head stage and %d epochs fit the budget", cfg.imgsz,
                         size, cfg.min_epochs)
                train_s *= (size / cfg.imgsz) ** 2
                cfg.imgsz = size
                train_loader, val_loader = loaders()
    if not resuming and not rank and hooks.has_head_stage:
        allowed = (cfg.time_budget - (time.perf_counter() - started)) * share if share else None
        head = hooks.head_stage(net, cfg.imgsz, device, allowed)
        if head is not None:
            history += head.history
            infer_s = head.infer_s_per_image
            if head.imgsz:
                stage_size[head.stage] = head.imgsz
            save_if_best(head.best_metric, head.stage, head.best_epoch)
            log.info("%s stage: best %s %.4f", head.stage, hooks.metric, head.best_metric)

    def infer_estimate(train_s: float, scale: float = 1.0) -> float:
        return (infer_s or train_s / 3) * scale * (hooks.eval_imgsz(cfg.imgsz) / cfg.imgsz) ** 2

    if handoff:
        epochs, plan = int(handoff["epochs"]), handoff["plan"]
    elif resuming:
        epochs, plan = int(state["epochs"]), state.get("plan")
    elif share >= 1:
        epochs, plan = 0, {"epochs": 0, "reason": "the first stage used the whole time budget"}
        log.info("time budget %.0fs: spent on the %s stage", cfg.time_budget, history[-1]["stage"] if history else "first")
    elif cfg.time_budget > 0:
        def make_plan(train_s: float, scale: float = 1.0):
            infer = infer_estimate(train_s, scale)
            return plan_epochs(cfg.time_budget, time.perf_counter() - started, n_train(), n_val, train_s * scale,
                               infer, cfg.epochs, reserve_s=hooks.final_eval_s(infer))

        budget_plan = make_plan(train_s)
        if auto_size:
            size = size_for_budget(cfg.imgsz, budget_plan.remaining_s * 0.9 / budget_plan.epoch_s, cfg.min_epochs)
            if size != cfg.imgsz:
                scale = (size / cfg.imgsz) ** 2
                log.info("image size %d -> %d so that %d epochs fit the budget", cfg.imgsz, size, cfg.min_epochs)
                cfg.imgsz = size
                train_loader, val_loader = loaders()
                budget_plan = make_plan(train_s, scale)
        epochs = budget_plan.epochs
        plan = {**budget_plan.to_dict(), "imgsz": cfg.imgsz, "test_imgsz": hooks.eval_imgsz(cfg.imgsz)}
        log.info("time budget %.0fs: %d epoch(s) at %d px (%s)", cfg.time_budget, epochs, cfg.imgsz, budget_plan.reason)
    else:
        epochs, plan = (10 if cfg.epochs is None else cfg.epochs), None

    def write_progress(total: int) -> None:
        files.write_state({"epochs": total, "plan": plan, "history": history, "best_metric": best["metric"],
                           "infer_s_per_image": infer_s, "auto_size": auto_size})

    if not rank:
        save_config(cfg, files.config)
        write_progress(epochs)
    if epochs == 0 and not rank and not files.best.is_file():  # nothing trains: the initial model is the result
        log.warning("no training epoch fits: best.pt holds the model as it is before fine-tuning")
        save_if_best(validate(net, hooks, val_loader, device), "init", 0)

    reserve = (plan or {}).get("reserve_s", 0.0)
    deadline = started + cfg.time_budget - reserve
    planned = Replanner.from_plan(epochs, deadline, cfg.epochs, plan)

    def on_validated(epoch: int, train_loss: float, metric: float, images_per_s: float, wall_s: float) -> int | None:
        """After each epoch: ``metric`` is NaN when there is no validation set (the last epoch is kept)."""
        history.append({"stage": "finetune", "epoch": epoch, "train_loss": train_loss, "val_metric": metric,
                        "train_images_per_s": images_per_s})
        validated = not math.isnan(metric)
        improved = save_if_best(metric, "finetune", epoch) if validated else False
        if not hooks.n_val:  # no validation set: the latest weights are the result
            hooks.save_weights(files.best, net, hooks.eval_imgsz(cfg.imgsz), info(metric, "finetune", epoch))
        if cfg.save_top_k > 1 and validated:
            keep_top_k(metric, epoch)
        new_total = planned.after_epoch(epoch, wall_s) if cfg.time_budget > 0 else None
        if notify_epoch(epoch, metric, train_loss):  # a listener (e.g. a sweep scheduler) asks to stop here
            planned.epochs = new_total = epoch
        write_progress(planned.epochs)
        files.write_history(history)
        left = f", {max(0.0, deadline - time.perf_counter()):.0f}s of the budget left" if cfg.time_budget > 0 else ""
        scored = (f"val {hooks.metric} {metric:.4f}{' (best)' if improved else ''}" if validated else
                  "not validated" if hooks.n_val else "no validation set")
        log.info("epoch %d/%d: loss %.4f, %s, %.1f img/s%s", epoch, planned.epochs, train_loss, scored, images_per_s,
                 left)
        return new_total

    if epochs > 0:
        net.train()  # Lightning keeps submodules' modes; a head stage leaves them in eval mode
        if cfg.freeze_bn:
            dist.freeze_batchnorm(net)
        if world > 1 and not rank:
            dist.write_handoff(files.run, net, cfg.imgsz, epochs, plan)
        steps_per_epoch = len(train_loader)
        module = LitTask(net, hooks, epochs * steps_per_epoch, steps_per_epoch)
        callbacks = build_callbacks(cfg, files, epochs, EpochEnd(hooks, on_validated))
        trainer = build_trainer(cfg, files, epochs, device, callbacks, deadline - time.perf_counter(),
                                find_unused=hooks.find_unused or cfg.stages > 1 or cfg.frozen_fraction > 0,
                                steps_per_epoch=steps_per_epoch)
        fit_module = torch.compile(module) if cfg.compile else module
        with stop_on_signals(trainer) as stopped:
            trainer.fit(fit_module, train_loader, val_loader if hooks.n_val else None,
                        ckpt_path=str(files.last_ckpt) if resuming else None, weights_only=True)
        if rank:
            return TrainResult(files.run, files.best, {}, rank=rank)
        if not hooks.n_val and not stopped.signal and history:  # EMA/SWA: the averaged weights are in net now
            hooks.save_weights(files.best, net, hooks.eval_imgsz(cfg.imgsz),
                               info(float("nan"), "finetune", history[-1]["epoch"]))
        dist.handoff_path(files.run).unlink(missing_ok=True)
        files.write_history(history)
        if stopped.signal:
            raise RunStopped(stopped.signal, files.run, cfg.task)
    files.write_history(history)
    return finish(hooks, files, device, history, plan, time.perf_counter() - started)


def finish(hooks: FitHooks, files: RunFiles, device: str, history: list[dict], plan: dict | None,
           seconds: float) -> TrainResult:
    """The task scores the best weights and writes its outputs; then metrics.json, plan.json, curves."""
    if not files.best.is_file():
        raise FashionlabError(f"{files.run}: training produced no checkpoint (no epochs ran?)")
    result = hooks.finish(files, device)
    result.metrics = {"task": hooks.cfg.task, "metric": hooks.metric, "lower_is_better": not hooks.higher_is_better,
                      **result.metrics, "train_seconds": round(seconds, 1)}
    write_json(files.metrics, result.metrics)
    if plan:
        write_json(files.run / "plan.json", plan)
    files.plot(history, hooks.metric, result.metrics, hooks.higher_is_better)
    return result
