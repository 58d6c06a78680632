"""Real-photo accuracy: fashionlab's default recipe vs the plain timm+torch loop, same budget and split.

fashionlab runs first (the CLI, as a user would); the plain loop then trains on exactly the
training images fashionlab used, at the image size fashionlab chose, and both are scored on
fashionlab's held-out images by the same evaluator (``fashionlab evaluate``'s functions).
"""
from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fashionlab import api
from fashionlab.data.images import list_images
from fashionlab.engine.checkpoint import load_weights

from .common import fashionlab, run
from .plain import Item, finetune_in_budget

DATASETS = {  # name -> (task, folder under the data root, what is held out)
    "trashnet": ("classify", "trashnet-112", "held-out 20% (split_seed 0)"),
    "clothing-256": ("classify", "clothing-256", "train -> validation folder"),
    "clothing-attributes": ("attributes", "clothing-attributes", "held-out 20% (split_seed 0)"),
}


def _subset_classify(root: Path, dest: Path, per_class: int) -> Path:
    """A class-balanced subset of a class-folder set (keeps a train/validation split if there is one)."""
    parts = [p for p in ("train", "validation") if (root / p).is_dir()] or [""]
    for part in parts:
        src = root / part if part else root
        for cls in sorted(p for p in src.iterdir() if p.is_dir()):
            files = list_images(cls)
            random.Random(0).shuffle(files)
            keep = per_class if part != "validation" else max(4, per_class // 4)
            for f in files[:keep]:
                link = dest / part / cls.name / f.name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(f.resolve())
    return dest


def _subset_attributes(root: Path, dest: Path, rows_per_task: int) -> Path:
    lines = (root / "Annotations" / "label.csv").read_text().splitlines()
    by_task: dict[str, list[str]] = {}
    for line in lines:
        by_task.setdefault(line.split(",")[1], []).append(line)
    keep = [line for rows in by_task.values() for line in rows[:rows_per_task]]
    (dest / "Annotations").mkdir(parents=True)
    (dest / "Annotations" / "label.csv").write_text("\n".join(keep) + "\n")
    (dest / "Images").symlink_to((root / "Images").resolve())
    return dest


def _classify_items(data: Path, run_dir: Path) -> tuple[list[Item], list[Item], list[str], list[str]]:
    """The plain loop's train/val items: exactly fashionlab's split (its val_truth.csv)."""
    with open(run_dir / "predictions" / "val_truth.csv", newline="") as handle:
        val_rows = list(csv.DictReader(handle))
    has_val_folder = (data / "train").is_dir() and (data / "validation").is_dir()
    train_root, val_root = (data / "train", data / "validation") if has_val_folder else (data, data)
    train_files = [(p, p.parent.name) for p in list_images(train_root)]
    classes = sorted({c for _, c in train_files})
    index = {c: i for i, c in enumerate(classes)}
    val_keys = {r["image"] for r in val_rows}
    if not has_val_folder:
        train_files = [(p, c) for p, c in train_files if p.relative_to(data).as_posix() not in val_keys]
    train = [Item(p, index[c], 0, len(classes)) for p, c in train_files]
    val = [Item(val_root / r["image"], index[r["label"]], 0, len(classes)) for r in val_rows]
    return train, val, classes, [r["image"] for r in val_rows]


def _attribute_items(data: Path, run_dir: Path) -> tuple[list[Item], list[Item], list[tuple[str, str]], int]:
    def rows(path: Path) -> list[list[str]]:
        return [line.split(",") for line in path.read_text().splitlines() if line.strip()]

    all_rows = rows(data / "Annotations" / "label.csv")
    val_rows = rows(run_dir / "predictions" / "val_truth.csv")
    widths: dict[str, int] = {}
    for _, task, label in all_rows:
        widths.setdefault(task, len(label))
    offsets, width = {}, 0
    for task in sorted(widths):
        offsets[task], width = width, width + widths[task]
    held = {(p, t) for p, t, _ in val_rows}

    def item(p: str, t: str, label: str) -> Item:
        target = label.index("y") if "y" in label else label.index("m")
        return Item(data / p, offsets[t] + target, offsets[t], offsets[t] + widths[t])

    train = [item(*r) for r in all_rows if (r[0], r[1]) not in held]
    val = [item(*r) for r in val_rows]
    return train, val, [(p, t) for p, t, _ in val_rows], width


def benchmark(name: str, data: Path, out: Path, budget: float, quick: bool) -> dict[str, Any]:
    task, _, split = DATASETS[name]
    out.mkdir(parents=True, exist_ok=True)
    if quick:  # a small subset so the whole suite stays under 10 minutes
        data = (_subset_attributes(data, out / "subset", 60) if task == "attributes"
                else _subset_classify(data, out / "subset", 30))
    run_dir = out / "fashionlab"
    cmd = fashionlab("train", task, "--exist-ok", "--data", str(data), "--out", str(run_dir), "--time-budget", str(budget),
                     "--set", "split_seed=0")
    ran = run(cmd, log=out / "fashionlab.log")
    imgsz = int(yaml.safe_load((run_dir / "config.yaml").read_text())["imgsz"])
    test_imgsz = load_weights(run_dir / "weights" / "best.pt").imgsz  # fashionlab predicts at its test size
    truth, pred = run_dir / "predictions" / "val_truth.csv", run_dir / "predictions" / "val.csv"
    ours = api.evaluate(task, pred, truth)
    row: dict[str, Any] = {"dataset": name, "task": task, "split": split, "imgsz": imgsz, "test_imgsz": test_imgsz, "budget_s": budget,
                           "fashionlab_seconds": round(ran.seconds, 1), "fashionlab_peak_rss_mib": round(ran.peak_rss_mib),
                           "command": ran.command}
    if task == "classify":
        train, val, classes, keys = _classify_items(data, run_dir)
        probs, info = finetune_in_budget(train, val, len(classes), imgsz, budget, also_at=test_imgsz)

        def write_plain(path: Path, probs: list[np.ndarray]) -> Path:
            with open(path, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["image", "label", "score"])
                for key, p in zip(keys, probs):
                    writer.writerow([key, classes[int(p.argmax())], f"{p.max():.6f}"])
            return path

        plain = api.evaluate(task, write_plain(out / "plain_val.csv", probs), truth)
        row.update(metric="accuracy", fashionlab=ours["accuracy"], plain=plain["accuracy"])
        if "probs_also_at" in info:
            row["plain_at_test_imgsz"] = api.evaluate(
                task, write_plain(out / "plain_val_at_test_px.csv", info.pop("probs_also_at")), truth)["accuracy"]
    else:
        train, val, keys, width = _attribute_items(data, run_dir)
        probs, info = finetune_in_budget(train, val, width, imgsz, budget, also_at=test_imgsz)

        def write_plain(path: Path, probs: list[np.ndarray]) -> Path:
            path.write_text("".join(f"{p},{t},{';'.join(f'{x:.6f}' for x in pr)}\n" for (p, t), pr in zip(keys, probs)))
            return path

        plain = api.evaluate(task, write_plain(out / "plain_val.csv", probs), truth)
        if "probs_also_at" in info:
            row["plain_at_test_imgsz"] = api.evaluate(
                task, write_plain(out / "plain_val_at_test_px.csv", info.pop("probs_also_at")), truth)["map"]
        tta = _attributes_tta(data, run_dir, truth, out)
        row.update(metric="map", fashionlab=ours["map"], plain=plain["map"], fashionlab_accuracy=ours["accuracy"],
                   plain_accuracy=plain["accuracy"], fashionlab_tta_map=tta["map"],
                   fashionlab_tta_accuracy=tta["accuracy"], tta_command=tta["command"])
    row.update(plain_epochs=info["epochs"], plain_seconds=info["seconds"],
               val_images=len(val), train_images=len(train))
    return row


def _attributes_tta(data: Path, run_dir: Path, truth: Path, out: Path, tta: str = "10crop") -> dict[str, Any]:
    """TTA on the held-out rows (a question file beside a link to the images), through the ONNX export:
    10 views per image are 10× the inference, and ONNX Runtime is the fast CPU path (see the speed section)."""
    root = out / "val_questions"
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / "label.csv").write_text(truth.read_text())
    if not (root / "Images").exists():
        (root / "Images").symlink_to((data / "Images").resolve())
    onnx = out / "best.onnx"
    run(fashionlab("export", "--weights", str(run_dir / "weights" / "best.pt"), "--out", str(onnx)),
        log=out / "export.log")
    pred = out / f"fashionlab_val_{tta}.csv"
    ran = run(fashionlab("predict", "attributes", "--weights", str(onnx), "--source",
                         str(root / "Annotations" / "label.csv"), "--out", str(pred), "--tta", tta),
              log=out / "tta.log")
    return {**api.evaluate("attributes", pred, truth), "command": ran.command}
