"""The baseline: the fine-tune loop a careful user writes by hand with torch + timm (no fashionlab engine).

As issue 16 describes it: efficientnet_lite0 with the same offline ImageNet weights, ALL training photos
(no validation hold-out), every photo decoded ONCE into memory as uint8 at the train size, a
random-resized crop (area 0.5-1) and a flip done on tensors, channels_last, AdamW at a constant 1e-3,
cross-entropy with label smoothing 0.1, batch 32, trained until the wall-clock budget — counted from
the start of this process, imports and decoding included — is spent, less the time predicting the test
set takes. Tested at its train size. FashionAI attributes: one softmax per task (its slice of the outputs).

    python benchmarks/bench/plain.py --task classify --train TRAIN_DIR --test TEST_DIR --imgsz 112 \\
        --budget 480 --seed 0 --out OUT_DIR      # -> OUT_DIR/pred.csv (fashionlab's format), info.json

Standalone on purpose (a subprocess per run, so start-up counts against the budget like the CLI's).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fashionlab.models.backbone import create_backbone

STARTED = psutil.Process().create_time()  # wall-clock start of this process (epoch seconds)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class Rows:
    """Images with their target column in the concatenated outputs and their task's slice [lo, hi)."""

    paths: list[Path]
    keys: list[str]  # the key the evaluator joins on
    tasks: list[str]
    target: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def read_classify(train: Path, test: Path) -> tuple[Rows, Rows, list[str], int]:
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())

    def rows(root: Path) -> Rows:
        files = [(f, k) for k, c in enumerate(classes) for f in sorted((root / c).iterdir())
                 if f.suffix.lower() in EXTENSIONS]
        n = len(files)
        return Rows([f for f, _ in files], [f"{f.parent.name}/{f.name}" for f, _ in files], ["class"] * n,
                    np.array([k for _, k in files]), np.zeros(n, np.int64), np.full(n, len(classes)))

    return rows(train), rows(test), classes, len(classes)


def read_attributes(train: Path, test: Path) -> tuple[Rows, Rows, list[str], int]:
    def lines(root: Path) -> list[list[str]]:
        text = (root / "Annotations" / "label.csv").read_text()
        return [line.split(",") for line in text.splitlines() if line.strip()]

    train_lines, test_lines = lines(train), lines(test)
    widths: dict[str, int] = {}
    for _, task, label in train_lines:
        widths.setdefault(task, len(label))
    offsets, width = {}, 0
    for task in sorted(widths):
        offsets[task], width = width, width + widths[task]

    def rows(root: Path, table: list[list[str]]) -> Rows:
        lo = np.array([offsets[t] for _, t, _ in table])
        return Rows([root / p for p, _, _ in table], [p for p, _, _ in table], [t for _, t, _ in table],
                    lo + np.array([label.index("y") for _, _, label in table]), lo,
                    lo + np.array([widths[t] for _, t, _ in table]))

    return rows(train, train_lines), rows(test, test_lines), sorted(widths), width


def decode(paths: list[Path], imgsz: int) -> torch.Tensor:
    """Every image once, resized to imgsz x imgsz: [N, 3, S, S] uint8."""
    out = torch.empty(len(paths), 3, imgsz, imgsz, dtype=torch.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            img = img.convert("RGB").resize((imgsz, imgsz), Image.BILINEAR)
            out[i] = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
    return out


def augment(batch: torch.Tensor, gen: torch.Generator, scale: tuple[float, float] = (0.5, 1.0)) -> torch.Tensor:
    """Random-resized crop (area ``scale``, aspect 3/4-4/3) and a horizontal flip, per image, float32 0-255."""
    n, _, size, _ = batch.shape
    out = torch.empty(n, 3, size, size)
    r = torch.rand(n, 4, generator=gen)
    for i in range(n):
        area = scale[0] + (scale[1] - scale[0]) * r[i, 0].item()
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * r[i, 1].item())
        h = min(size, max(8, round(size * math.sqrt(area / ratio))))
        w = min(size, max(8, round(size * math.sqrt(area * ratio))))
        y, x = int((size - h) * r[i, 2].item()), int((size - w) * r[i, 3].item())
        crop = batch[i:i + 1, :, y:y + h, x:x + w].float()
        out[i] = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).view(1, 3, 1, 1) * 255
    s = torch.tensor(std).view(1, 3, 1, 1) * 255
    return ((x.float() - m) / s).contiguous(memory_format=torch.channels_last)


def sliced_loss(logits: torch.Tensor, rows: Rows, index: np.ndarray, smoothing: float) -> torch.Tensor:
    """Cross-entropy of each row over its own task's outputs (classify: all of them)."""
    lo, hi, target = rows.lo[index], rows.hi[index], rows.target[index]
    total = logits.new_zeros(())
    for a, b in sorted(set(zip(lo.tolist(), hi.tolist()))):
        sel = np.flatnonzero((lo == a) & (hi == b))
        total = total + F.cross_entropy(logits[sel, a:b], torch.as_tensor(target[sel] - a),
                                        label_smoothing=smoothing, reduction="sum")
    return total / len(index)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, rows: Rows, mean, std, batch: int = 64) -> list[np.ndarray]:
    model.eval()
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch):
        logits = model(normalise(images[start:start + batch], mean, std))
        for j, row in enumerate(logits):
            i = start + j
            out.append(row[rows.lo[i]:rows.hi[i]].softmax(0).numpy())
    return out


def build(width: int, model_name: str = "efficientnet_lite0") -> tuple[nn.Module, tuple, tuple]:
    backbone = create_backbone(model_name)
    model = nn.Sequential(backbone.model, nn.Linear(backbone.num_features, width))
    return model.to(memory_format=torch.channels_last), backbone.mean, backbone.std


def train_in_budget(train: Rows, test: Rows, width: int, imgsz: int, budget_s: float, seed: int = 0,
                    batch: int = 32, lr: float = 1e-3, smoothing: float = 0.1) -> tuple[list[np.ndarray], dict]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model, mean, std = build(width)
    x_train, x_test = decode(train.paths, imgsz), decode(test.paths, imgsz)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    n = len(train.paths)
    steps, seen, step_s = 0, 0, []
    done = False
    while not done:
        order = torch.randperm(n, generator=gen).numpy()
        model.train()
        for start in range(0, n - batch + 1 if n > batch else 1, batch):
            t0 = time.time()
            index = order[start:start + batch]
            loss = sliced_loss(model(normalise(augment(x_train[index], gen), mean, std)), train, index, smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps, seen = steps + 1, seen + len(index)
            step_s.append(time.time() - t0)
            per_image = float(np.median(step_s[-20:])) / len(index)
            # predicting costs about a third of a training step per image (forward only), plus a margin
            reserve = len(test.paths) * per_image / 3 + 2.0
            if time.time() - STARTED + per_image * batch + reserve > budget_s:
                done = True
                break
    train_end = time.time()
    probs = predict(model, x_test, test, mean, std)
    info = {"imgsz": imgsz, "seed": seed, "steps": steps, "images_seen": seen, "epochs": round(seen / n, 2),
            "train_images_per_s": round(batch / float(np.median(step_s)), 1) if step_s else None,
            "predict_s": round(time.time() - train_end, 1), "n_train": n, "n_test": len(test.paths)}
    return probs, info


def write_predictions(task: str, path: Path, rows: Rows, probs: list[np.ndarray], classes: list[str]) -> None:
    if task == "classify":
        lines = ["image,label,score"] + [f"{k},{classes[int(p.argmax())]},{p.max():.6f}" for k, p in zip(rows.keys, probs)]
    else:
        lines = [f"{k},{t},{';'.join(f'{v:.6f}' for v in p)}" for k, t, p in zip(rows.keys, rows.tasks, probs)]
    path.write_text("\n".join(lines) + "\n")


def images_per_second(paths: list[Path], targets: list[int], width: int, imgsz: int, batch: int = 32,
                      steps: int = 20) -> float:
    """Steady-state training images/s of this loop (decoding excluded: it happens once, before training)."""
    n = len(paths)
    rows = Rows(paths, [str(p) for p in paths], ["class"] * n, np.array(targets), np.zeros(n, np.int64),
                np.full(n, width))
    model, mean, std = build(width)
    images = decode(paths, imgsz)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    times = []
    for step in range(steps):
        index = torch.randint(0, n, (batch,), generator=gen).numpy()
        t0 = time.perf_counter()
        loss = sliced_loss(model(normalise(augment(images[index], gen), mean, std)), rows, index, 0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 3:  # warm-up steps excluded
            times.append(time.perf_counter() - t0)
    return batch / float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("classify", "attributes"), required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--imgsz", type=int, default=112)
    parser.add_argument("--budget", type=float, default=480.0, help="wall-clock seconds from process start")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    reader = read_classify if args.task == "classify" else read_attributes
    train, test, classes, width = reader(args.train, args.test)
    probs, info = train_in_budget(train, test, width, args.imgsz, args.budget, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_predictions(args.task, args.out / "pred.csv", test, probs, classes)
    info["seconds"] = round(time.time() - STARTED, 1)
    (args.out / "info.json").write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
