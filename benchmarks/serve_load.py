"""Load test of `fashionlab serve`: requests/s and latency with micro-batching on vs off.

Starts the server as a subprocess (uvicorn on 127.0.0.1, a free port; loopback only), drives it
with ``--clients`` concurrent httpx clients for ``--seconds`` per mode, each posting JPEGs to
``/predict/{task}``, and prints a markdown table and JSON: requests/s, p50/p90/p99 latency, errors
(must be 0) and the server's own batch counters from ``/health``. Without ``--weights`` a random
``--model`` attributes model (3 heads, no pretrained weights, nothing downloaded) is made first.

    python benchmarks/serve_load.py --seconds 15 --clients 50
    python benchmarks/serve_load.py --weights runs/demo/run/weights/best.pt --seconds 20

Client and server share the machine's cores, so absolute numbers are a lower bound.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def make_weights(path: Path, model: str, imgsz: int) -> Path:
    import torch

    from fashionlab.engine.checkpoint import save_weights
    from fashionlab.models.backbone import create_backbone
    from fashionlab.models.net import ClassifierNet
    from fashionlab.tasks.base import TaskMeta

    torch.manual_seed(0)
    meta = TaskMeta(["neck_design_labels", "sleeve_length_labels", "coat_length_labels"],
                    [[f"v{i}" for i in range(5)], [f"v{i}" for i in range(9)], [f"v{i}" for i in range(8)]])
    backbone = create_backbone(model, pretrained="none")
    net = ClassifierNet(backbone.model, backbone.num_features, meta.head_sizes).eval()
    return save_weights(path, net, "attributes", meta, model, imgsz, backbone.mean, backbone.std)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def images(n: int = 8, size: int = 256) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def start_server(weights: Path, port: int, batching: bool, window_ms: float, max_batch: int) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--serve", "--weights", str(weights), "--port", str(port),
           "--window-ms", str(window_ms), "--max-batch", str(max_batch)] + ([] if batching else ["--no-batching"])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start within 120 s")


async def drive(url: str, task: str, clients: int, seconds: float, payloads: list[bytes]) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        for data in payloads[:2]:  # warm-up
            await client.post(f"/predict/{task}", content=data, headers={"content-type": "image/jpeg"})
        stop = time.perf_counter() + seconds

        async def one(k: int) -> None:
            i = k
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    r = await client.post(f"/predict/{task}", content=payloads[i % len(payloads)],
                                          headers={"content-type": "image/jpeg"})
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:100]}")
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                latencies.append(time.perf_counter() - started)
                i += 1

        began = time.perf_counter()
        await asyncio.gather(*[one(k) for k in range(clients)])
        elapsed = time.perf_counter() - began
        health = (await client.get("/health")).json()
    lat = np.array(latencies) * 1000
    stats = health["batching"]["per_task"][task]
    return {"requests": len(latencies), "seconds": round(elapsed, 2), "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p90_ms": round(float(np.percentile(lat, 90)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1), "errors": len(errors), "first_error": errors[:1],
            "mean_batch": stats["mean_batch"], "largest_batch": stats["largest_batch"]}


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from fashionlab.serve import create_app

    app = create_app([args.weights], batch_window_ms=args.window_ms, max_batch=args.max_batch,
                     micro_batching=not args.no_batching)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--model", default="efficientnet_lite0", help="random model when --weights is not given")
    parser.add_argument("--imgsz", type=int, default=96)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--no-batching", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or make_weights(Path(tmp) / "best.pt", args.model, args.imgsz)
        from fashionlab.engine.checkpoint import load_weights

        task = load_weights(weights).task
        payloads = images()
        rows = {}
        for batching in (True, False):
            port = free_port()
            proc = start_server(weights, port, batching, args.window_ms, args.max_batch)
            try:
                rows["on" if batching else "off"] = asyncio.run(
                    drive(f"http://127.0.0.1:{port}", task, args.clients, args.seconds, payloads))
            finally:
                proc.terminate()
                proc.wait(10)
    result = {"weights": str(args.weights or f"random {args.model} @ {args.imgsz}"), "task": task,
              "clients": args.clients, "seconds_per_mode": args.seconds, "window_ms": args.window_ms,
              "max_batch": args.max_batch, "cpus": os.cpu_count(), "micro_batching": rows}
    print("| micro-batching | req/s | p50 ms | p90 ms | p99 ms | errors | mean batch | largest batch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['rps']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['errors']} | "
              f"{r['mean_batch']} | {r['largest_batch']} |")
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if any(r["errors"] for r in rows.values()):
        raise SystemExit("errors during the load test: " + json.dumps({k: r["first_error"] for k, r in rows.items()}))


if __name__ == "__main__":
    main()
