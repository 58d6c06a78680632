"""Load test of `fashionlab serve` on loopback: throughput, latency, refusals and the server's memory.

Starts the server as a subprocess (uvicorn on 127.0.0.1, a free port; a fresh server per scenario,
so each peak RSS starts from the same baseline) and drives it with concurrent clients:

- ``photos``: for each ``--clients`` count, that many concurrent clients post real photos
  (``--photos``, default ../shared/data/clothing-256) to ``/predict/{task}`` for ``--seconds``;
- ``large``: ``--large`` clients post PNGs of ``--large-side``² pixels (just under the 40 M pixel cap;
  smooth, so they compress far below the upload limit), all at the same moment, each client
  ``--large-rounds`` times: the decompression-heavy case that used to take ~100 MB per upload.

Per scenario: requests, req/s (all answers and 200s only), p50/p90/p99 latency of the 200s as the
clients see it and as the server sees it (from uvicorn handing over the request to the last byte of
the answer: the difference is connection handling and the clients themselves, which share the CPU),
counts by status (429/503 are admission refusals, 504 timeouts, "exc" client-side failures), and the
server process's RSS before and at its peak (psutil, sampled every 50 ms). The load generator is
aiohttp when installed (``--client httpx``: the earlier one, whose own overhead showed up as seconds
of tail). Without ``--weights`` a random ``--model`` attributes model (3 heads, nothing downloaded)
is made first.

    python benchmarks/serve_load.py                                   # 10/50/200 clients + 40 large PNGs
    python benchmarks/serve_load.py --clients 50 --seconds 12 --no-large --batching both
    python benchmarks/serve_load.py --weights runs/demo/run/weights/best.pt --json out.json
    python benchmarks/serve_load.py --clients --decode-workers 8              # only the large uploads, 8 threads

``--decode-workers N`` is passed to the server; an older fashionlab without that option (for
before/after comparisons: ``PYTHONPATH=OLD/src``) sizes its decode pool from ``os.cpu_count()``, which
the server process then reports as N, so both run N decoding threads.

Client and server share the machine's cores, so absolute numbers are a lower bound.
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "clothing-256"


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


def photos(folder: Path, n: int = 64) -> list[bytes]:
    """``n`` photos spread over the folder's classes (or random JPEGs when it is missing)."""
    files = sorted(folder.rglob("*.jpg")) if folder.is_dir() else []
    if not files:
        rng = np.random.default_rng(0)
        out = []
        for _ in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buf, "JPEG", quality=85)
            out.append(buf.getvalue())
        return out
    step = max(1, len(files) // n)
    return [p.read_bytes() for p in files[::step][:n]]


def large_pngs(side: int, variants: int = 2) -> list[bytes]:
    """Smooth ``side``² RGB PNGs: a few MB each, ``side``² pixels to decode."""
    out = []
    ramp = (np.arange(side) % 256).astype(np.uint8)
    for k in range(variants):
        arr = np.empty((side, side, 3), np.uint8)
        arr[..., 0] = ramp[None, :]
        arr[..., 1] = ramp[:, None]
        arr[..., 2] = (ramp[None, :] // 2 + ramp[:, None] // 2 + 40 * k).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG", compress_level=6)
        out.append(buf.getvalue())
    return out


class RssSampler:
    """Peak resident memory of one process, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.proc, self.every = psutil.Process(pid), every
        self.before = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.every)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def start_server(weights: Path, port: int, args: argparse.Namespace, batching: bool) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--serve", "--weights", str(weights), "--port", str(port),
           "--window-ms", str(args.window_ms), "--max-batch", str(args.max_batch), "--timeout", str(args.timeout),
           "--max-queue", str(args.max_queue)] + ([] if batching else ["--no-batching"]) + \
        (["--decode-workers", str(args.decode_workers)] if args.decode_workers else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start within 180 s")


class Client:
    """The load generator: aiohttp (fast; default when installed) or httpx. Clients share the CPU with
    the server, and httpx's own overhead at 50+ concurrent requests added seconds to the measured tail
    (client p99 3.3 s against 0.7 s inside the server, 50 clients); with aiohttp the two agree."""

    def __init__(self, url: str, clients: int, kind: str) -> None:
        self.url, self.clients, self.kind = url, clients, kind

    async def __aenter__(self) -> "Client":
        if self.kind == "aiohttp":
            import aiohttp

            self.session = aiohttp.ClientSession(self.url, connector=aiohttp.TCPConnector(limit=self.clients),
                                                 timeout=aiohttp.ClientTimeout(total=120))
            self.errors: tuple = (aiohttp.ClientError, asyncio.TimeoutError)
        else:
            limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
            self.session = httpx.AsyncClient(base_url=self.url, timeout=120, limits=limits)
            self.errors = (httpx.HTTPError,)
        return self

    async def __aexit__(self, *exc) -> None:
        await (self.session.close() if self.kind == "aiohttp" else self.session.aclose())

    async def post(self, path: str, data: bytes, ctype: str) -> int:
        if self.kind == "aiohttp":
            async with self.session.post(path, data=data, headers={"content-type": ctype}) as r:
                await r.read()
                return r.status
        return (await self.session.post(path, content=data, headers={"content-type": ctype})).status_code

    async def get_json(self, path: str):
        if self.kind == "aiohttp":
            async with self.session.get(path) as r:
                return await r.json()
        return (await self.session.get(path)).json()


async def drive(url: str, task: str, clients: int, seconds: float | None, payloads: list[bytes], ctype: str,
                rounds: int = 1, kind: str = "aiohttp") -> dict:
    """``clients`` closed-loop clients for ``seconds`` (None: each posts ``rounds`` times, the first
    requests all at the same moment)."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    async with Client(url, clients, kind) as client:
        if seconds is not None:
            for data in payloads[:2]:  # warm-up
                await client.post(f"/predict/{task}", data, ctype)
        stop = time.perf_counter() + (seconds or 0)

        async def one(k: int) -> None:
            i = k
            while True:
                started = time.perf_counter()
                try:
                    status = await client.post(f"/predict/{task}", payloads[i % len(payloads)], ctype)
                    statuses[str(status)] += 1
                    if status == 200:
                        latencies.append(time.perf_counter() - started)
                except client.errors as exc:
                    statuses[f"exc:{type(exc).__name__}"] += 1
                i += 1
                if (i - k >= rounds) if seconds is None else time.perf_counter() >= stop:
                    return

        await client.get_json("/_bench/latency")  # drop the warm-up's timings
        began = time.perf_counter()
        await asyncio.gather(*[one(k) for k in range(clients)])
        elapsed = time.perf_counter() - began
        health = await client.get_json("/health")
        inside = [t for t, status in await client.get_json("/_bench/latency") if status == 200]
    lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
    app_lat = np.array(inside) * 1000 if inside else np.zeros(1)
    total = sum(statuses.values())
    return {"clients": clients, "requests": total, "seconds": round(elapsed, 2), "rps": round(total / elapsed, 1),
            "ok_rps": round(statuses.get("200", 0) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p90_ms": round(float(np.percentile(lat, 90)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1), "statuses": dict(sorted(statuses.items())),
            "server_p50_ms": round(float(np.percentile(app_lat, 50)), 1),
            "server_p99_ms": round(float(np.percentile(app_lat, 99)), 1),
            "batching": health.get("batching", {}).get("per_task", {}).get(task, {}),
            "admission": health.get("admission")}


def scenario(weights: Path, task: str, args: argparse.Namespace, batching: bool, clients: int,
             seconds: float | None, payloads: list[bytes], ctype: str, rounds: int = 1) -> dict:
    port = free_port()
    proc = start_server(weights, port, args, batching)
    try:
        with RssSampler(proc.pid) as rss:
            row = asyncio.run(drive(f"http://127.0.0.1:{port}", task, clients, seconds, payloads, ctype, rounds,
                                    args.client))
            time.sleep(1.0)  # abandoned work would still be running now
        row.update(rss_before_mb=round(rss.before / 2**20), rss_peak_mb=round(rss.peak / 2**20))
    finally:
        proc.terminate()
        proc.wait(20)
    return row


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from fashionlab.serve import create_app

    options = {"batch_window_ms": args.window_ms, "max_batch": args.max_batch, "micro_batching": not args.no_batching,
               "timeout_s": args.timeout, "max_queue": args.max_queue, "decode_workers": args.decode_workers or None}
    accepted = inspect.signature(create_app).parameters  # an older fashionlab (before/after comparisons)
    if args.decode_workers and "decode_workers" not in accepted:
        os.cpu_count = lambda: args.decode_workers  # its pool is max(2, min(8, os.cpu_count()))
    app = create_app([args.weights], **{k: v for k, v in options.items() if k in accepted})
    timings: list[tuple[float, int]] = []  # (seconds inside the app, status) of each /predict request

    async def timed(scope, receive, send):
        """The app, timed from the moment uvicorn hands it the request to the last byte of the answer;
        ``GET /_bench/latency`` returns (and clears) those timings."""
        if scope["type"] == "http" and scope["path"] == "/_bench/latency":
            body = json.dumps(timings).encode()
            timings.clear()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            return await send({"type": "http.response.body", "body": body})
        if scope["type"] != "http" or not scope["path"].startswith("/predict"):
            return await app(scope, receive, send)
        started, status = time.perf_counter(), [0]

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await app(scope, receive, watch)
        timings.append((time.perf_counter() - started, status[0]))

    uvicorn.run(timed, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


def table(rows: list[dict]) -> str:
    lines = ["| case | batching | clients | req/s (200 only) | p50 / p99 ms (client) | p50 / p99 ms (server) | "
             "statuses | RSS before → peak MB |", "|---|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        statuses = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items())
        lines.append(f"| {r['case']} | {r['batching_mode']} | {r['clients']} | {r['rps']} ({r['ok_rps']}) | "
                     f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} | {r['server_p50_ms']:.0f} / {r['server_p99_ms']:.0f} | "
                     f"{statuses} | {r['rss_before_mb']} → {r['rss_peak_mb']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--model", default="efficientnet_lite0", help="random model when --weights is not given")
    parser.add_argument("--imgsz", type=int, default=96)
    parser.add_argument("--clients", type=int, nargs="*", default=[10, 50, 200], help="none: only the large case")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--large", type=int, default=40, help="concurrent large PNG uploads (0: skip)")
    parser.add_argument("--no-large", dest="large", action="store_const", const=0)
    parser.add_argument("--large-side", type=int, default=6300)
    parser.add_argument("--large-rounds", type=int, default=2, help="uploads per large client, one after the other")
    parser.add_argument("--batching", choices=("on", "off", "both"), default="on")
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--max-queue", type=int, default=256)
    parser.add_argument("--decode-workers", type=int, default=0, help="0: the server's default")
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default=None,
                        help="load generator (default: aiohttp when installed, else httpx)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--no-batching", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args)
    if args.client is None:
        try:
            import aiohttp  # noqa: F401

            args.client = "aiohttp"
        except ImportError:
            args.client = "httpx"
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.batching]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or make_weights(Path(tmp) / "best.pt", args.model, args.imgsz)
        from fashionlab.engine.checkpoint import load_weights

        task = load_weights(weights).task
        normal = photos(args.photos)
        for batching in modes:
            for clients in args.clients:
                row = scenario(weights, task, args, batching, clients, args.seconds, normal, "image/jpeg")
                rows.append({"case": "photos", "batching_mode": "on" if batching else "off", **row})
                print(table(rows[-1:]).splitlines()[-1], flush=True)
            if args.large:
                big = large_pngs(args.large_side)
                row = scenario(weights, task, args, batching, args.large, None, big, "image/png", args.large_rounds)
                rows.append({"case": f"{args.large_side}² PNG ({len(big[0]) / 2**20:.1f} MB)",
                             "batching_mode": "on" if batching else "off", **row})
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    import fashionlab

    result = {"weights": str(args.weights or f"random {args.model} @ {args.imgsz}"), "task": task,
              "fashionlab": str(Path(fashionlab.__file__).parent), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "client": args.client, "seconds_per_case": args.seconds, "window_ms": args.window_ms,
              "max_batch": args.max_batch, "timeout_s": args.timeout, "max_queue": args.max_queue,
              "decode_workers": args.decode_workers or "default", "rows": rows}
    print(table(rows))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
