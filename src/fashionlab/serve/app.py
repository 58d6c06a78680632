"""The HTTP service: ``create_app(weights, index=...)`` returns a FastAPI app (run it with uvicorn).

Endpoints: ``POST /predict/{task}`` (an image as multipart field ``file`` or raw ``image/*`` bytes),
``POST /search`` (same upload; ``?top=10&category=``), ``GET /health``, ``GET /`` (the web page),
``GET /gallery/{id}`` (gallery images of the loaded index), and FastAPI's ``/docs`` and
``/openapi.json``. Errors are ``{"detail": "one line"}`` with 404 (unknown task / no index),
413 (upload too large), 415 (not an image), 400 (broken image or form), 501 (no retrieval support),
504 (not answered within ``timeout_s``), 429 / 503 with ``Retry-After`` (refused by admission
control: queue full / expected wait over the timeout, see ``admission.py``) and 500 (the model
failed; the server keeps running).

Work per request: admission, read the body with a size cap, check the header (format, pixel cap),
wait for room in the decode pixel budget, decode and resize to the model's input in a thread pool,
then the model runs in one dedicated thread, through a ``MicroBatcher`` per task (see
``batcher.py``): the batch queue holds model-size tensors, never full-size images. A request that
timed out (504) or whose client disconnected is cancelled: a decode not yet started never starts and
its item never reaches the model.
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.requests import ClientDisconnect

from ..data.images import max_pixels
from ..errors import FashionlabError
from .adapters import Adapter, load_adapters
from .admission import Admission, Refused
from .batcher import MicroBatcher
from .search import SearchHook, SearchUnavailable
from .uploads import ACCEPTED, UploadError, decode_upload, probe, read_upload

log = logging.getLogger(__name__)
WATCH_AFTER_S = 0.25  # a request still waiting after this long starts watching for its client's disconnect
UPLOAD_BODY = {"requestBody": {"required": True, "description": ACCEPTED, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}}


@dataclass
class ServeState:
    """Everything the routes share; ``app.state.serve`` (tests read the batchers' counters here)."""

    adapters: dict[str, Adapter]
    batchers: dict[str, MicroBatcher]
    search: SearchHook
    max_bytes: int
    timeout_s: float
    micro_batching: bool
    window_ms: float
    max_batch: int
    model_pool: ThreadPoolExecutor
    decode_pool: ThreadPoolExecutor
    admission: Admission
    page: str = field(repr=False, default="")

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "tasks": sorted(self.adapters),
                "models": {task: adapter.describe() for task, adapter in sorted(self.adapters.items())},
                "batching": {"enabled": self.micro_batching, "window_ms": self.window_ms, "max_batch": self.max_batch,
                             "per_task": {task: b.stats.as_dict() for task, b in sorted(self.batchers.items())}},
                "search": self.search.describe(),
                "limits": {"max_upload_mb": self.max_bytes / 2**20, "timeout_s": self.timeout_s,
                           "max_pixels": max_pixels()},
                "admission": self.admission.as_dict()}


def _error(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _decode_prepare(adapter: Adapter, data: bytes, name: str) -> Any:
    """Decode (JPEG draft / box reduction to about the model size) and preprocess, in one pool call
    (``probe`` has checked the header already)."""
    return adapter.prepare(decode_upload(data, name, adapter.draft))


def _page() -> str:
    return (resources.files("fashionlab.serve") / "static" / "index.html").read_text(encoding="utf-8")


async def _in(pool: ThreadPoolExecutor, fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


class _Client:
    """Watches for the client's disconnect once the request body has been read (not before: the
    body stream and the watcher would share the ASGI ``receive``), and then cancels the work."""

    def __init__(self, request: Request) -> None:
        self.request, self.gone = request, False
        self._watcher: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, after: float = WATCH_AFTER_S) -> None:
        """Called from inside the work: from ``after`` seconds on, a disconnect cancels the task running
        it (a request answered sooner costs no watcher; one that waits is the one worth cancelling)."""
        work, loop = asyncio.current_task(), asyncio.get_running_loop()

        async def wait() -> None:
            while (await self.request.receive())["type"] != "http.disconnect":
                pass
            self.gone = True
            work.cancel()

        def start() -> None:
            self._watcher = loop.create_task(wait())

        self._timer = loop.call_later(after, start)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


async def _guard(state: ServeState, request: Request, work: Callable[[_Client], Any]) -> Any:
    """Run ``work(client)`` with the timeout (504) and map every failure to a one-line JSON error; the
    work is cancelled when time is up or the client is gone."""
    client = _Client(request)
    try:
        return await asyncio.wait_for(work(client), state.timeout_s)
    except Refused as err:
        return _error(err.status, err.message, err.retry_after)
    except (UploadError, SearchUnavailable) as err:
        return _error(err.status, err.message)
    except asyncio.TimeoutError:
        state.admission.counts["504"] += 1
        return _error(504, f"no answer within {state.timeout_s:g} s (server busy or image too slow); try again")
    except asyncio.CancelledError:
        if not client.gone:  # the server is shutting down
            raise
        state.admission.counts["client_gone"] += 1
        return _error(499, "client closed the connection")
    except ClientDisconnect:
        return _error(499, "client closed the connection")
    except FashionlabError as err:
        return _error(400, str(err))
    except Exception as exc:  # noqa: BLE001 - one failed request must not take the server down
        log.error("request failed", exc_info=exc)
        return _error(500, f"prediction failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})")
    finally:
        client.stop()


def create_app(weights: Sequence[str | Path], index: str | Path | None = None, max_upload_mb: float = 10,
               batch_window_ms: float = 5, max_batch: int = 32, timeout_s: float = 10, micro_batching: bool = True,
               device: str = "cpu", max_queue: int = 256, decode_workers: int | None = None,
               decode_megapixels: float | None = None) -> FastAPI:
    """The service for ``weights`` (best.pt / .onnx files or run folders) and an optional retrieval ``index``.

    ``max_queue``: requests in flight before 429; ``decode_workers``: decoding threads (default: CPU
    cores, 2..8); ``decode_megapixels``: pixels decoded at once (default: twice the pixel cap).
    Models and the index are loaded now, so a bad path fails here with a ``FashionlabError``.
    """
    if max_upload_mb <= 0 or timeout_s <= 0 or max_batch < 1:
        raise FashionlabError("max_upload_mb and timeout_s must be positive and max_batch at least 1")
    if max_queue < 1 or (decode_workers is not None and decode_workers < 1) or \
            (decode_megapixels is not None and decode_megapixels <= 0):
        raise FashionlabError("max_queue and decode_workers must be at least 1 and decode_megapixels positive")
    adapters = load_adapters(weights, device) if weights else {}
    search = SearchHook(Path(index) if index is not None else None, device)
    if not adapters and not search.available:
        raise FashionlabError(f"nothing to serve: pass --weights RUN/weights/best.pt (or an index; {search.reason})")
    workers = decode_workers or max(2, min(8, os.cpu_count() or 2))
    budget = int(decode_megapixels * 1e6) if decode_megapixels else 2 * max_pixels()
    admission = Admission(int(max_queue), float(timeout_s), workers, budget)
    model_pool = ThreadPoolExecutor(1, thread_name_prefix="fashionlab-model")
    decode_pool = ThreadPoolExecutor(workers, thread_name_prefix="fashionlab-decode")
    batchers = {task: MicroBatcher(adapter.predict, model_pool, batch_window_ms, max_batch, micro_batching,
                                   admission.record_batch) for task, adapter in adapters.items()}
    state = ServeState(adapters, batchers, search, int(max_upload_mb * 2**20), float(timeout_s), micro_batching,
                       float(batch_window_ms), int(max_batch), model_pool, decode_pool, admission, _page())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for batcher in batchers.values():
            await batcher.stop()

    app = FastAPI(title="fashionlab", version="1", lifespan=lifespan,
                  description="Fashion image recognition: attributes, classes, style tags and similar items.")
    app.state.serve = state

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(state.page)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Loaded models and tasks, micro-batching settings and batch counters, search availability."""
        return state.health()

    @app.post("/predict/{task}", openapi_extra=UPLOAD_BODY)
    async def predict(task: str, request: Request) -> Any:
        """Predict one image with the model(s) of ``task``; the JSON shape depends on the task."""
        adapter = adapters.get(task)
        if adapter is None:
            loaded = ", ".join(sorted(adapters)) or "none"
            return _error(404, f"no model loaded for task '{task}'; loaded tasks: {loaded}")

        async def work(client: _Client) -> Any:
            async with admission.ticket() as ticket:
                data, name = await read_upload(request, state.max_bytes)
                client.watch()
                _, pixels = probe(data, name, adapter.draft)
                item = await admission.decode(decode_pool, pixels, _decode_prepare, adapter, data, name)
                del data  # the upload is not held while the item waits for the model
                ticket.decoded()
                return await batchers[task].submit(item)

        return await _guard(state, request, work)

    @app.post("/search", openapi_extra=UPLOAD_BODY)
    async def search_route(request: Request, top: int = Query(10, ge=1, le=100),
                           category: str | None = Query(None, description="a gallery category, or 'auto'")) -> Any:
        """The ``top`` most similar gallery items to the uploaded image, best first."""
        if not search.available:
            return _error(search.status, search.reason)

        async def work(client: _Client) -> Any:
            async with admission.ticket() as ticket:
                data, name = await read_upload(request, state.max_bytes)
                client.watch()
                fmt, pixels = probe(data, name)
                await admission.decode(decode_pool, pixels, decode_upload, data, name, None)
                ticket.decoded()
                results = await _in(model_pool, search, data, fmt, top, category)
                return {"top": top, "results": results}

        return await _guard(state, request, work)

    @app.get("/gallery/{item:path}", include_in_schema=False)
    async def gallery(item: str) -> Any:
        path = search.gallery_image(item)
        if path is None:
            return _error(404, f"no gallery image '{item}'")
        return FileResponse(path)

    return app
