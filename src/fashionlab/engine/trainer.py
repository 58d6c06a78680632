"""``train``: the one loop every classification-style task runs, in two stages, inside a time budget.

Stage 1 fits the new head on cached features of the frozen backbone; stage 2 fine-tunes everything
with Lightning (AMP on GPU, channels_last, optional torch.compile, resumable ``last.ckpt``). The best
weights by the task's own validation metric are written to ``RUN/weights/best.pt`` whenever they
improve, so a usable checkpoint exists from the end of stage 1 on.
"""
from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import RunConfig, save_config
from ..data.images import ImageDataset, check_images
from ..data.transforms import train_transform, eval_transform
from ..errors import FashionlabError
from ..io import write_json
from ..models.backbone import create_backbone
from ..models.losses import Objective
from ..models.net import ClassifierNet
from ..tasks import get_task
from ..tasks.base import LabelledSet, TaskMeta
from .budget import Replanner, budget_clock_start, plan_epochs
from .callbacks import build_callbacks, build_trainer, unfreeze_last
from .checkpoint import save_weights
from . import distributed as dist
from .head_stage import train_head
from .image_size import native_size, size_for_budget, size_for_budget_and_head, size_for_photos, test_size
from .predictor import make_loader, predict_probs
from .progress import notify_epoch
from .run_files import RunFiles

log = logging.getLogger(__name__)
# best.pt lives beside Lightning's last.ckpt on purpose; the pytree notice is Lightning's own business
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")  # freeze_bn, on purpose


@dataclass
class TrainResult:
    run: Path
    best: Path
    metrics: dict[str, Any]
    val_set: LabelledSet | None = None  # what the best checkpoint was scored on (K-fold gathers these)
    val_probs: list[np.ndarray] | None = None
    meta: TaskMeta | None = None
    rank: int = 0  # data-parallel rank; only rank 0 scores, writes files and fills ``metrics``


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FashionlabError(f"device '{name}' requested but no CUDA GPU is available")
    return name


def _targets(data: LabelledSet) -> list[tuple[int, np.ndarray]]:
    return list(zip(data.task_index.tolist(), data.targets))


def probe_train_speed(net: torch.nn.Module, loader, loss_of, device: str, batches: int = 5,
                      warmup: int = 2, frozen_fraction: float = 0.0) -> float:
    """Seconds per training image, measured on a throw-away copy (the first batches are warm-up).

    ``loss_of(trial_net, batch) -> (loss, n_images)`` is the task's own training step.
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
        loss, n_images = loss_of(trial, batch)
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


def build_model(cfg: RunConfig, task, meta: TaskMeta) -> tuple[ClassifierNet, Objective, tuple, tuple]:
    """The network, its objective and the normalisation its backbone weights expect."""
    backbone = create_backbone(cfg.model, cfg.pretrained, cfg.drop_rate)
    log.info("backbone %s, weights: %s", cfg.model, backbone.weights)
    net = ClassifierNet(backbone.model, backbone.num_features, meta.head_sizes, cfg.head, cfg.head_hidden)
    objective = Objective.from_config(cfg, task.multilabel, task.cost_matrix(cfg, meta))
    if cfg.channels_last:  # measured on 2 CPU cores: 37.5 vs 21.5 train img/s for efficientnet_lite0 at 112 px
        net.to(memory_format=torch.channels_last)
    return net, objective, backbone.mean, backbone.std


def train(cfg: RunConfig, resume: bool = False) -> TrainResult:
    started = budget_clock_start()
    import lightning.pytorch as pl

    from .lit import LitClassifier

    pl.seed_everything(cfg.seed, verbose=False)
    task = get_task(cfg.task)
    train_set, val_set, meta = task.load_train(cfg)  # before creating RUN: bad data leaves no folder behind
    files = RunFiles(Path(cfg.out))
    rank = dist.global_rank(cfg)
    handoff = dist.read_handoff(files.run) if rank else None  # the other ranks start where rank 0 is at fit
    if handoff:
        cfg.imgsz = handoff["imgsz"]
    else:
        files.prepare()
    resuming = resume and files.last_ckpt.is_file()
    if resume and not resuming and not rank:
        log.warning("%s: nothing to resume, starting from the beginning", files.last_ckpt)
    state = files.read_state() if resuming else {}  # progress of a run that has a checkpoint to go on from
    if not rank:
        save_config(cfg, files.config)
    train_set = train_set.subset(check_images(train_set.paths, cfg.skip_bad))
    val_set = val_set.subset(check_images(val_set.paths, cfg.skip_bad))
    if len(train_set) == 0:
        raise FashionlabError(f"{cfg.data}: no training images left")
    if not rank:
        files.write_data_summary(train_set, val_set, meta)
    auto_size = state.get("auto_size", cfg.imgsz is None) if resuming else cfg.imgsz is None
    if cfg.imgsz is None:
        cfg.imgsz = size_for_photos(native_size(train_set.paths, seed=cfg.seed))
        log.info("image size %d (from the photos' own size)", cfg.imgsz)
    device = resolve_device(cfg.device)
    net, objective, mean, std = build_model(cfg, task, meta)
    if handoff:
        net.load_state_dict(handoff["state_dict"])

    def score(probs: list[np.ndarray]) -> float:
        return float(task.score(probs, val_set, meta)[task.metric])

    best = {"metric": state.get("best_metric", -math.inf)}
    history: list[dict] = list(state.get("history", []))

    def eval_imgsz() -> int:
        """Validation and prediction size of fine-tuned weights (the head stage trains on whole images)."""
        return cfg.test_imgsz or test_size(cfg.imgsz, cfg.scale_min)

    def save_if_best(metric: float, stage: str, epoch: int) -> None:
        if metric > best["metric"]:
            best["metric"] = metric
            size = cfg.imgsz if stage == "head" else eval_imgsz()
            save_weights(files.best, net, task.name, meta, cfg.model, size, mean, std,
                         {"metric": task.metric, "value": metric, "stage": stage, "epoch": epoch,
                          "train_imgsz": cfg.imgsz})

    top_k: list[tuple[float, Path]] = [(r["val_metric"], files.weights / f"epoch{r['epoch']}.pt") for r in history
                                       if r["stage"] == "finetune" and (files.weights / f"epoch{r['epoch']}.pt").is_file()]

    def keep_top_k(metric: float, epoch: int) -> None:
        """Keep the k best fine-tune epochs as weights/epochN.pt, for checkpoint ensembles."""
        if len(top_k) >= cfg.save_top_k and metric <= min(m for m, _ in top_k):
            return
        path = files.weights / f"epoch{epoch}.pt"
        save_weights(path, net, task.name, meta, cfg.model, eval_imgsz(), mean, std,
                     {"metric": task.metric, "value": metric, "stage": "finetune", "epoch": epoch,
                      "train_imgsz": cfg.imgsz})
        top_k.append((metric, path))
        top_k.sort(key=lambda item: -item[0])
        for _, worst in top_k[cfg.save_top_k:]:
            worst.unlink(missing_ok=True)
        del top_k[cfg.save_top_k:]

    def loaders():
        train_tf = train_transform(cfg.imgsz, mean, std, cfg.scale_min, cfg.hflip, cfg.color_jitter)
        if getattr(cfg, "recolour", 0.0) > 0:  # garment recolouring (styles option), before the usual transform
            from ..data.recolour import Recolour, RecolourDataset

            recolour = Recolour(cfg.recolour, mask_dir=cfg.recolour_masks or None, seed=cfg.seed)
            train_ds = RecolourDataset(train_set.paths, _targets(train_set), train_tf, recolour)
        else:
            train_ds = ImageDataset(train_set.paths, _targets(train_set), train_tf)
        val_ds = ImageDataset(val_set.paths, _targets(val_set), eval_transform(eval_imgsz(), mean, std))
        shard = dist.sampler(train_ds, cfg, rank, shuffle=True)
        val_shard = dist.sampler(val_ds, cfg, rank, shuffle=False) if dist.world_size(cfg) > 1 else None
        return (make_loader(train_ds, cfg.batch, cfg.workers, drop_last=len(shard) > cfg.batch, sampler=shard),
                make_loader(val_ds, cfg.batch * 2, cfg.workers, sampler=val_shard))

    train_loader, val_loader = loaders()
    infer_s = state.get("infer_s_per_image", 0.0)
    world = dist.world_size(cfg)  # each rank trains and validates its own shard
    n_train, n_val = -(-len(train_set) // world), -(-len(val_set) // world)

    def loss_of(trial, batch):
        images, (task_index, targets) = batch
        return objective(trial(images.to(device), task_index.to(device)), targets.to(device)), len(images)

    train_s = 0.0
    if cfg.time_budget > 0 and not resuming and not handoff:
        train_s = probe_train_speed(net, train_loader, loss_of, device, frozen_fraction=cfg.frozen_fraction)
        if auto_size:  # settle the size before the head stage's feature pass, which costs as much as it
            head_s = (len(train_set) + len(val_set)) * train_s / 3 if cfg.head_epochs > 0 else 0.0
            epoch_s = n_train * train_s + n_val * train_s / 3
            left = (cfg.time_budget - (time.perf_counter() - started) - n_val * train_s / 3 - 5.0) * 0.9
            size = size_for_budget_and_head(cfg.imgsz, left, epoch_s, head_s, cfg.min_epochs)
            if size != cfg.imgsz:
                log.info("image size %d -> %d so that the head stage and %d epochs fit the budget", cfg.imgsz,
                         size, cfg.min_epochs)
                train_s *= (size / cfg.imgsz) ** 2
                cfg.imgsz = size
                train_loader, val_loader = loaders()
    if not resuming and not rank and cfg.head_epochs > 0:
        head = train_head(net, train_set, val_set, score, cfg.imgsz, mean, std, cfg.head_epochs, cfg.head_lr,
                          cfg.weight_decay, objective, cfg.batch * 2, cfg.workers, device, cfg.seed)
        history += head.history
        infer_s = head.infer_s_per_image
        save_if_best(head.best_metric, "head", head.best_epoch)
        log.info("head stage: best %s %.4f at epoch %d", task.metric, head.best_metric, head.best_epoch)

    if handoff:
        epochs, plan = int(handoff["epochs"]), handoff["plan"]
    elif resuming:
        epochs = int(state["epochs"])
        plan = state.get("plan")
    elif cfg.time_budget > 0:
        budget_plan = plan_epochs(cfg.time_budget, time.perf_counter() - started, n_train, n_val,
                                  train_s, (infer_s or train_s / 3) * (eval_imgsz() / cfg.imgsz) ** 2, cfg.epochs)
        if auto_size:
            size = size_for_budget(cfg.imgsz, budget_plan.remaining_s * 0.9 / budget_plan.epoch_s, cfg.min_epochs)
            if size != cfg.imgsz:
                scale = (size / cfg.imgsz) ** 2
                log.info("image size %d -> %d so that %d epochs fit the budget", cfg.imgsz, size, cfg.min_epochs)
                cfg.imgsz = size
                train_loader, val_loader = loaders()
                budget_plan = plan_epochs(cfg.time_budget, time.perf_counter() - started, n_train, n_val,
                                          train_s * scale, (infer_s or train_s / 3) * scale
                                          * (eval_imgsz() / cfg.imgsz) ** 2, cfg.epochs)
        epochs, plan = budget_plan.epochs, {**budget_plan.to_dict(), "imgsz": cfg.imgsz, "test_imgsz": eval_imgsz()}
        log.info("time budget %.0fs: %d fine-tune epoch(s) (%s)", cfg.time_budget, epochs, budget_plan.reason)
    else:
        epochs, plan = (10 if cfg.epochs is None else cfg.epochs), None
    if not rank:
        save_config(cfg, files.config)
        files.write_state({"epochs": epochs, "plan": plan, "history": history, "best_metric": best["metric"],
                           "infer_s_per_image": infer_s, "auto_size": auto_size})

    deadline = started + cfg.time_budget - (plan or {}).get("reserve_s", 0.0)
    planned = Replanner.from_plan(epochs, deadline, cfg.epochs, plan)

    def on_validated(epoch: int, train_loss: float, metric: float, images_per_s: float, wall_s: float) -> int | None:
        history.append({"stage": "finetune", "epoch": epoch, "train_loss": train_loss, "val_metric": metric,
                        "train_images_per_s": images_per_s})
        save_if_best(metric, "finetune", epoch)
        if cfg.save_top_k > 1:
            keep_top_k(metric, epoch)
        new_total = None
        if cfg.time_budget > 0 and not resuming:  # re-plan from the measured epoch times
            new_total = planned.after_epoch(epoch, wall_s)
        if notify_epoch(epoch, metric, train_loss):  # a listener (e.g. a sweep scheduler) asks to stop here
            planned.epochs = new_total = epoch
        files.write_state({"epochs": planned.epochs, "plan": plan, "history": history,
                           "best_metric": best["metric"], "infer_s_per_image": infer_s, "auto_size": auto_size})
        files.write_history(history)
        return new_total

    if epochs > 0:
        if eval_imgsz() != cfg.imgsz:
            log.info("fine-tune on %d px crops, validate and predict at %d px (test_imgsz)", cfg.imgsz, eval_imgsz())
        net.train()  # Lightning keeps submodules' modes; the head stage left them in eval mode
        if cfg.freeze_bn:
            dist.freeze_batchnorm(net)
        if dist.world_size(cfg) > 1 and not rank:
            dist.write_handoff(files.run, net, cfg.imgsz, epochs, plan)
        steps_per_epoch = len(train_loader)
        module = LitClassifier(net, cfg, objective, epochs * steps_per_epoch, steps_per_epoch, score, on_validated)
        callbacks = build_callbacks(cfg, files, epochs)
        trainer = build_trainer(cfg, files, epochs, device, callbacks, deadline - time.perf_counter(), resuming,
                                find_unused=len(meta.head_sizes) > 1 or cfg.stages > 1 or cfg.frozen_fraction > 0)
        fit_module = torch.compile(module) if cfg.compile else module
        trainer.fit(fit_module, train_loader, val_loader, ckpt_path=str(files.last_ckpt) if resuming else None,
                    weights_only=True)
        if rank:
            return TrainResult(files.run, files.best, {}, rank=rank)
        dist.handoff_path(files.run).unlink(missing_ok=True)
    files.write_history(history)
    return finish(cfg, files, task, meta, val_set, device, history, plan, time.perf_counter() - started)


def finish(cfg: RunConfig, files: "RunFiles", task, meta: TaskMeta, val_set: LabelledSet, device: str,
           history: list[dict], plan: dict | None, seconds: float) -> TrainResult:
    """Score the best checkpoint on validation, write metrics, predictions, plots and the report."""
    from .checkpoint import load_weights

    if not files.best.is_file():
        raise FashionlabError(f"{files.run}: training produced no checkpoint (no epochs ran?)")
    loaded = load_weights(files.best, device)
    metrics: dict[str, Any] = {"task": task.name, "metric": task.metric, "train_seconds": round(seconds, 1),
                               "best": loaded.info}
    probs: list[np.ndarray] = []
    if len(val_set):
        probs = predict_probs(loaded.net, val_set, loaded.imgsz, loaded.mean, loaded.std, "none",
                              cfg.batch * 2, cfg.workers, device, task.multilabel)
        metrics.update(task.score(probs, val_set, meta))
        task.write_predictions(files.predictions / "val.csv", val_set, probs, meta)
        task.write_probabilities(files.predictions / "val_probs.csv", val_set, probs, meta)
        task.write_truth(files.predictions / "val_truth.csv", val_set, meta)
    if meta.tasks == ["class"]:
        metrics["classes"] = meta.classes[0]
    write_json(files.metrics, metrics)
    if plan:
        write_json(files.run / "plan.json", plan)
    files.plot(history, task.metric, metrics)
    return TrainResult(files.run, files.best, metrics, val_set, probs, meta)
