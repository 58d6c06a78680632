"""CPU inference images/s: ONNX Runtime vs eager PyTorch vs eager PyTorch with channels_last.

One efficientnet_lite0 attributes-style model (random weights, nothing downloaded; speed does not
depend on the weights' values) at 224 px, batch 16, the same thread count for every runtime. The
model is exported with ``fashionlab.engine.export.export_onnx`` (checked against PyTorch). Each
runtime gets two warm-up batches, then ``--images`` images are timed.

    python benchmarks/export_speed.py --images 320 --threads 2
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fashionlab.engine.checkpoint import load_weights, save_weights
from fashionlab.engine.export import AllHeads, OnnxPredictor, export_onnx
from fashionlab.models.backbone import create_backbone
from fashionlab.models.net import ClassifierNet
from fashionlab.tasks.base import TaskMeta


def timed(run, batches: list[np.ndarray]) -> float:
    for x in batches[:2]:
        run(x)
    started = time.perf_counter()
    for x in batches:
        run(x)
    return time.perf_counter() - started


def measure(model: str = "efficientnet_lite0", imgsz: int = 224, batch: int = 16, images: int = 320,
            threads: int = 2) -> dict:
    """images/s of ONNX Runtime, eager PyTorch and channels_last PyTorch on the same random batches."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    meta = TaskMeta(["collar_design_labels", "sleeve_length_labels"], [[f"v{i}" for i in range(5)],
                                                                        [f"v{i}" for i in range(9)]])
    rng = np.random.default_rng(0)
    n_batches = max(1, images // batch)
    batches = [rng.standard_normal((batch, 3, imgsz, imgsz)).astype(np.float32) for _ in range(n_batches)]
    with tempfile.TemporaryDirectory() as tmp:
        backbone = create_backbone(model, pretrained="none")
        net = ClassifierNet(backbone.model, backbone.num_features, meta.head_sizes).eval()
        weights = save_weights(Path(tmp) / "best.pt", net, "attributes", meta, model, imgsz,
                               backbone.mean, backbone.std)
        summary = export_onnx(weights, Path(tmp) / "model.onnx")
        wrapper = AllHeads(load_weights(weights).net).eval()
        predictor = OnnxPredictor(Path(tmp) / "model.onnx", threads=threads)

        def eager(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return wrapper(torch.from_numpy(x)).numpy()

        results = {"onnxruntime": timed(predictor.all_logits, batches), "pytorch eager": timed(eager, batches)}
        wrapper = wrapper.to(memory_format=torch.channels_last)

        def channels_last(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return wrapper(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()

        results["pytorch channels_last"] = timed(channels_last, batches)
    n = n_batches * batch
    rows = {name: {"images_per_s": round(n / sec, 1), "ms_per_batch": round(1000 * sec / n_batches, 1)}
            for name, sec in results.items()}
    return {"model": model, "imgsz": imgsz, "batch": batch, "images": n, "threads": threads,
            "torch": torch.__version__, "onnx_max_abs_diff": summary["max_abs_diff"], "runtimes": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out = measure(args.model, args.imgsz, args.batch, args.images, args.threads)
    rows = out["runtimes"]
    base = rows["pytorch eager"]["images_per_s"]
    print(f"{args.model} @ {args.imgsz}, batch {args.batch}, {out['images']} images, {args.threads} threads, "
          f"torch {torch.__version__}; ONNX max |diff| {out['onnx_max_abs_diff']:.1e}")
    print("| runtime | images/s | ms/batch | vs eager |")
    print("|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['images_per_s']} | {r['ms_per_batch']} | {r['images_per_s'] / base:.2f}x |")
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
