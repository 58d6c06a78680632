"""``fashionlab serve`` and ``fashionlab export``: shipping a trained model."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import api


def register(app: typer.Typer, console) -> None:
    @app.command()
    def serve(
        weights: list[Path] = typer.Option([], help="best.pt, exported .onnx or run folder; repeat for more tasks."),
        index: Optional[Path] = typer.Option(None, help="Retrieval index folder (from `fashionlab index`): /search."),
        host: str = typer.Option("127.0.0.1", help="Interface; 0.0.0.0 exposes the server to the network."),
        port: int = typer.Option(8000),
        batching: bool = typer.Option(True, "--batching/--no-batching", help="Micro-batch concurrent requests."),
        batch_window_ms: float = typer.Option(5.0, "--batch-window-ms", help="How long a batch waits for more."),
        max_batch: int = typer.Option(32, "--max-batch"),
        max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Larger uploads get 413."),
        timeout: float = typer.Option(10.0, help="Seconds before a request is answered 504; a request whose "
                                      "expected wait is longer gets 503 + Retry-After at once."),
        max_queue: int = typer.Option(256, "--max-queue", help="Requests in flight; more get 429 + Retry-After."),
        decode_workers: Optional[int] = typer.Option(None, "--decode-workers",
                                                     help="Decoding threads (default: CPU cores, 2..8)."),
        decode_megapixels: Optional[float] = typer.Option(
            None, "--decode-megapixels", help="Pixels decoded at once, in millions (default: twice the pixel cap)."),
        device: str = typer.Option("cpu", help="cpu | cuda | cuda:N (ONNX files run on the CPU)."),
    ) -> None:
        """Serve models over HTTP: POST /predict/{task}, POST /search, GET /health; page at /, docs at /docs."""
        service = api.service(weights, index=index, max_upload_mb=max_upload_mb, batch_window_ms=batch_window_ms,
                              max_batch=max_batch, timeout_s=timeout, micro_batching=batching, device=device,
                              max_queue=max_queue, decode_workers=decode_workers, decode_megapixels=decode_megapixels)
        import uvicorn

        tasks = ", ".join(service.state.serve.adapters) or "search only"
        console.print(f"serving {tasks} on http://{host}:{port} (page /, API docs /docs); "
                      f"micro-batching {'on' if batching else 'off'}")
        uvicorn.run(service, host=host, port=port, log_level="warning")

    @app.command()
    def export(
        weights: Path = typer.Option(..., help="best.pt or a run folder."),
        fmt: str = typer.Option("onnx", "--format", help="onnx"),
        out: Optional[Path] = typer.Option(None, help="Output file (default: the weights file with .onnx)."),
        opset: int = typer.Option(17),
        check: bool = typer.Option(True, "--check/--no-check", help="Compare ONNX Runtime with PyTorch."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    ) -> None:
        """Export weights for deployment: ONNX with a dynamic batch, every head's logits in one output."""
        summary = api.export(weights, out, fmt=fmt, opset=opset, check=check)
        target = summary["out"]
        if as_json:
            print(json.dumps(summary))
            return
        diff = f"; max |ONNX - PyTorch| = {summary['max_abs_diff']:.1e}" if check else ""
        console.print(f"wrote {target} ({summary['bytes'] / 2**20:.1f} MB, opset {opset}, heads: "
                      f"{', '.join(summary['heads'])}){diff}")
