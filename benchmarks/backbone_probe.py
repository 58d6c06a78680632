"""Frozen-feature quality of a backbone layout, and its training-step speed (README, TrashNet section).

``probe``: logistic regression on frozen, pooled features of the offline weights (BatchNorm in eval
mode) on fashionlab's own train/val split, then the same classifier on the features the network gives
with BatchNorm on batch statistics (shuffled batches of 32, as in fine-tuning).
``speed``: training images/s on random tensors (batch 32, channels_last, AdamW, median step) with
the earliest ``frozen_fraction`` of backbone tensors frozen.

    python benchmarks/backbone_probe.py probe ../shared/data/trashnet-112 efficientnet_lite0:1e-5 tf_efficientnet_lite0:1e-3
    python benchmarks/backbone_probe.py speed efficientnet_lite0:128:0 efficientnet_lite0:128:0.3
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fashionlab import api
from fashionlab.data.images import ImageDataset
from fashionlab.data.transforms import eval_transform
from fashionlab.engine.callbacks import unfreeze_last
from fashionlab.engine.predictor import make_loader
from fashionlab.models.backbone import create_backbone
from fashionlab.models.net import ClassifierNet
from fashionlab.tasks import get_task


def pooled_features(model: torch.nn.Module, paths: list, size: int, mean, std, batch_stats: bool) -> np.ndarray:
    dataset = ImageDataset(paths, [(0, 0)] * len(paths), eval_transform(size, mean, std))
    model.train(batch_stats)
    with torch.no_grad():
        return torch.cat([model(images) for images, _ in make_loader(dataset, 32, 2)]).numpy()


def probe(data: str, layouts: list[str], size: int) -> None:
    from sklearn.linear_model import LogisticRegression

    cfg = api.config("classify", data=data, split_seed=0)
    train, val, _ = get_task("classify").load_train(cfg)
    y_train, y_val = np.asarray(train.targets).reshape(len(train), -1), np.asarray(val.targets).reshape(len(val), -1)
    y_train, y_val = (y.argmax(1) if y.shape[1] > 1 else y[:, 0] for y in (y_train, y_val))
    shuffled = np.random.default_rng(0).permutation(len(val))
    print(f"{data}: {len(train)} train / {len(val)} val, {size} px")
    print("| layout | BN eps | probe, BN eval mode | same classifier, BN batch statistics |\n|---|---|---|---|")
    for layout in layouts:
        name, eps = layout.split(":")
        backbone = create_backbone(name, "offline", drop_rate=0.0)
        for module in backbone.model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eps = float(eps)
        features = [pooled_features(backbone.model, s.paths, size, backbone.mean, backbone.std, False) for s in (train, val)]
        classifier = LogisticRegression(C=0.3, max_iter=3000).fit(features[0], y_train)
        batch_stat = pooled_features(backbone.model, [val.paths[i] for i in shuffled], size, backbone.mean,
                                     backbone.std, True)
        print(f"| {name} | {eps} | {np.mean(classifier.predict(features[1]) == y_val):.4f} | "
              f"{np.mean(classifier.predict(batch_stat) == y_val[shuffled]):.4f} |", flush=True)


def speed(specs: list[str], steps: int = 20, batch: int = 32) -> None:
    print("| model | px | frozen_fraction | train images/s |\n|---|---|---|---|")
    for spec in specs:
        name, size, frozen = spec.split(":")
        torch.manual_seed(0)
        backbone = create_backbone(name, "offline")
        net = ClassifierNet(backbone.model, backbone.num_features, [6], "linear", 0)
        net = net.to(memory_format=torch.channels_last).train()
        unfreeze_last(net.backbone, 1 - float(frozen))
        optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
        images = torch.randn(batch, 3, int(size), int(size)).contiguous(memory_format=torch.channels_last)
        labels, task = torch.randint(0, 6, (batch,)), torch.zeros(batch, dtype=torch.long)
        times = []
        for _ in range(steps):
            clock = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(net(images, task), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - clock)
        print(f"| {name} | {size} | {frozen} | {batch / float(np.median(times[2:])):.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["probe", "speed"])
    parser.add_argument("args", nargs="+", help="probe: DATA LAYOUT:EPS ...; speed: MODEL:PX:FROZEN ...")
    parser.add_argument("--size", type=int, default=160, help="probe image size")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.mode == "probe":
        probe(args.args[0], args.args[1:], args.size)
    else:
        speed(args.args)


if __name__ == "__main__":
    main()
