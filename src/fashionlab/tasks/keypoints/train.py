"""``train_keypoints``: data, model, Lightning loop inside a time budget, best-by-NE weights, run outputs.

The run folder is the engine's (``RunFiles``): config.yaml, data.json, history.csv, state.json,
weights/best.pt (lowest validation NE so far) and weights/last.ckpt (``--resume``), metrics.json,
plots/curves.png, plots/keypoints_overlay.png, predictions/val.csv and predictions/val_truth.csv
(so ``fashionlab evaluate keypoints --pred ... --truth RUN/predictions/val_truth.csv`` can be re-run).
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...config import save_config
from ...data.images import check_images
from ...engine.callbacks import build_trainer
from ...engine.trainer import probe_train_speed
from ...engine.budget import Replanner, budget_clock_start, plan_epochs
from ...engine.image_size import native_size, size_for_photos
from ...engine.predictor import make_loader
from ...engine.run_files import RunFiles
from ...engine.trainer import TrainResult, resolve_device
from ...errors import FashionlabError
from ...io import write_json
from .augment import KeypointAugment
from .config import KeypointsConfig
from .dataset import KeypointDataset, KeypointRecords, read_records, split_records, write_truth_csv
from .features import create_feature_backbone
from .loss_decode import keypoint_loss
from .metric import normalized_error, write_keypoints_csv
from .model import build_net, load_keypoints, save_keypoints, spec_from_config
from .plots import plot_ne_curves, plot_overlay
from .predict import as_prediction_set, clip_to_images, predict_records

log = logging.getLogger(__name__)


def load_data(cfg: KeypointsConfig) -> tuple[KeypointRecords, KeypointRecords]:
    """Train/val records: ``val_data`` if given, else a split stratified by category; images checked."""
    records = read_records(Path(cfg.data), cfg.categories, cfg.skip_bad)
    if cfg.val_data:
        train, val = records, read_records(Path(cfg.val_data), cfg.categories, cfg.skip_bad)
    else:
        train, val = split_records(records, cfg.val_fraction, cfg.seed)
    train = train.subset(check_images(train.paths, cfg.skip_bad))
    val = val.subset(check_images(val.paths, cfg.skip_bad))
    if not len(train):
        raise FashionlabError(f"{cfg.data}: no training rows left")
    if not len(val):
        raise FashionlabError(f"{cfg.data}: no validation rows (set val_fraction > 0 or --val-data)")
    normalized_error(val.truth(), val.truth())  # raises, naming the file, when nothing in val can be scored
    return train, val


def data_summary(train: KeypointRecords, val: KeypointRecords) -> dict[str, Any]:
    def points(rec: KeypointRecords) -> dict[str, int]:
        return {"visible": int((rec.v == 1).sum()), "occluded": int((rec.v == 0).sum())}

    return {"train_images": len(train), "val_images": len(val),
            "train_counts": dict(sorted(Counter(train.categories).items())),
            "val_counts": dict(sorted(Counter(val.categories).items())),
            "train_points": points(train), "val_points": points(val)}


def train_keypoints(cfg: KeypointsConfig, resume: bool = False) -> TrainResult:
    started = budget_clock_start()
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from .lit import LitKeypoints

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    files = RunFiles(Path(cfg.out))
    files.prepare()
    state = files.read_state() if resume else {}
    save_config(cfg, files.config)
    train_set, val_set = load_data(cfg)
    write_json(files.run / "data.json", data_summary(train_set, val_set))
    if cfg.imgsz is None:
        cfg.imgsz = size_for_photos(native_size(train_set.paths, seed=cfg.seed))
        log.info("image size %d (from the photos' own size)", cfg.imgsz)
    if cfg.imgsz % cfg.output_stride:
        raise FashionlabError(f"imgsz {cfg.imgsz} must be a multiple of output_stride {cfg.output_stride}")
    device = resolve_device(cfg.device)
    backbone = create_feature_backbone(cfg.model, cfg.pretrained)
    log.info("backbone %s (feature maps), weights: %s", cfg.model, backbone.weights)
    spec = spec_from_config(cfg)
    net = build_net(backbone, spec)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    mean, std = backbone.mean, backbone.std
    truth = val_set.truth()

    def score(coords: np.ndarray) -> float:
        return float(normalized_error(as_prediction_set(val_set, clip_to_images(coords, val_set.sizes)), truth)["ne"])

    best = {"ne": state.get("best_ne", math.inf)}
    history: list[dict] = list(state.get("history", []))

    def save_if_best(ne: float, stage: str, epoch: int) -> None:
        if ne < best["ne"]:
            best["ne"] = ne
            save_keypoints(files.best, net, spec, mean, std,
                           {"metric": "ne", "value": ne, "lower_is_better": True, "stage": stage, "epoch": epoch})

    augment = KeypointAugment(cfg.rotate, cfg.affine_scale, cfg.shift, cfg.hflip, cfg.blur, cfg.noise,
                              cfg.color_jitter, seed=cfg.seed)
    train_ds = KeypointDataset(train_set, cfg.imgsz, mean, std, augment, cfg.train_occluded,
                               crop_prob=0.5 if cfg.two_stage else 0.0, crop_margin=cfg.crop_margin)
    val_ds = KeypointDataset(val_set, cfg.imgsz, mean, std)
    train_loader = make_loader(train_ds, cfg.batch, cfg.workers, shuffle=True, drop_last=len(train_ds) > cfg.batch)
    val_loader = make_loader(val_ds, cfg.batch * 2, cfg.workers)

    resuming = resume and files.last_ckpt.is_file()
    if resume and not resuming:
        log.warning("%s: nothing to resume, starting from the beginning", files.last_ckpt)
    if resuming:
        epochs, plan = int(state["epochs"]), state.get("plan")
    elif cfg.time_budget > 0:
        def loss_of(trial, batch):
            images, target = batch
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            target = {k: v.to(device) if torch.is_tensor(v) else v for k, v in target.items()}
            return keypoint_loss(trial(images.to(device)), target, cfg.head, cfg.imgsz, cfg.output_stride,
                                 cfg.sigma, cfg.regression_loss), len(images)

        train_s = probe_train_speed(net, train_loader, loss_of, device, batches=3, warmup=1)
        # the final evaluation predicts val several times: as configured, flip-test (2 views), other decoder
        passes = (4 if cfg.head == "heatmap" else 3) * (2 if cfg.two_stage else 1)
        final_s = len(val_set) * (passes - 1) * train_s / 3
        budget = plan_epochs(cfg.time_budget - final_s, time.perf_counter() - started, len(train_set), len(val_set),
                             train_s, train_s / 3, cfg.epochs)
        epochs, plan = budget.epochs, {**budget.to_dict(), "final_eval_s": final_s, "imgsz": cfg.imgsz}
        log.info("time budget %.0fs: %d epoch(s) (%s)", cfg.time_budget, epochs, budget.reason)
    else:
        epochs, plan = (10 if cfg.epochs is None else cfg.epochs), None
    save_config(cfg, files.config)
    if epochs == 0 and not files.best.is_file():  # nothing to train: the untrained model is the result
        log.warning("no training epoch fits: best.pt holds the untrained model")
        save_keypoints(files.best, net, spec, mean, std, {"metric": "ne", "stage": "init", "epoch": 0})

    reserve = (plan or {}).get("reserve_s", 0.0) + (plan or {}).get("final_eval_s", 0.0)
    deadline = started + cfg.time_budget - reserve
    planned = Replanner.from_plan(epochs, deadline, cfg.epochs, plan)

    def write_state() -> None:
        files.write_state({"epochs": planned.epochs, "plan": plan, "history": history, "best_ne": best["ne"]})

    write_state()

    def on_validated(epoch: int, train_loss: float, ne: float, images_per_s: float, wall_s: float) -> int | None:
        history.append({"stage": "finetune", "epoch": epoch, "train_loss": train_loss, "val_metric": ne,
                        "train_images_per_s": images_per_s})
        save_if_best(ne, "finetune", epoch)
        new_total = None
        if cfg.time_budget > 0 and not resuming:  # re-plan from the measured epoch time
            new_total = planned.after_epoch(epoch, wall_s)
        write_state()
        files.write_history(history)
        return new_total

    if epochs > 0:
        steps_per_epoch = len(train_loader)
        module = LitKeypoints(net, cfg, epochs * steps_per_epoch, steps_per_epoch, len(val_set), score, on_validated)
        callbacks: list = [ModelCheckpoint(dirpath=str(files.weights), filename="last", save_top_k=1, monitor=None,
                                           enable_version_counter=False)]
        if cfg.patience > 0:
            from lightning.pytorch.callbacks import EarlyStopping

            callbacks.append(EarlyStopping(monitor="val_metric", mode="min", patience=cfg.patience))
        trainer = build_trainer(cfg, files, epochs, device, callbacks, deadline - time.perf_counter(), resuming)
        fit_module = torch.compile(module) if cfg.compile else module
        trainer.fit(fit_module, train_loader, val_loader, ckpt_path=str(files.last_ckpt) if resuming else None,
                    weights_only=True)
    files.write_history(history)
    return finish(cfg, files, val_set, device, history, plan, time.perf_counter() - started)


def finish(cfg: KeypointsConfig, files: RunFiles, val_set: KeypointRecords, device: str, history: list[dict],
           plan: dict | None, seconds: float) -> TrainResult:
    """Score the best weights on validation (as configured, plus flip-test and the other decoder), write
    metrics.json, the val prediction/truth CSVs and the plots."""
    if not files.best.is_file():
        raise FashionlabError(f"{files.run}: training produced no checkpoint (no epochs ran?)")
    model = load_keypoints(files.best, device)
    truth = val_set.truth()

    def evaluate(**kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        coords = predict_records(model, val_set, batch=cfg.batch * 2, workers=cfg.workers, device=device, **kwargs)
        return coords, normalized_error(as_prediction_set(val_set, coords), truth)

    coords, scores = evaluate()
    metrics: dict[str, Any] = {"task": "keypoints", "metric": "ne", "lower_is_better": True, **scores,
                               "ne_flip": evaluate(tta="flip")[1]["ne"]}
    if cfg.head == "heatmap":
        other = "argmax" if cfg.decode == "soft_argmax" else "soft_argmax"
        metrics[f"ne_{other}"] = evaluate(method=other)[1]["ne"]
    if cfg.two_stage:
        metrics["ne_single_stage"] = evaluate(two_stage=False)[1]["ne"]
    metrics.update({"train_seconds": round(seconds, 1), "best": model.info})
    write_keypoints_csv(files.predictions / "val.csv", val_set.ids, val_set.categories, coords)
    write_truth_csv(files.predictions / "val_truth.csv", val_set)
    write_json(files.metrics, metrics)
    if plan:
        write_json(files.run / "plan.json", plan)
    if history:
        plot_ne_curves(history, files.plots / "curves.png")
    plot_overlay(val_set, coords, files.plots / "keypoints_overlay.png")
    return TrainResult(files.run, files.best, metrics)
