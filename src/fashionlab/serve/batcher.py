"""Micro-batching: requests that arrive within a few milliseconds of each other run as one batch.

Each request puts ``(item, future)`` on an asyncio queue. One worker task per model takes the first
item, waits up to ``window_ms`` for more (at most ``max_batch``), and runs the batch function in a
thread executor, so the event loop keeps accepting requests while the model computes. Under load the
queue fills while a batch runs, so batches grow with load and throughput with them; an idle server
adds at most ``window_ms`` of latency. A request answered 504 or whose client went away has its future
cancelled, and its item is dropped before the model runs (``stats.dropped``). ``enabled=False`` runs
every request alone (batch of one) on the same executor, for comparison and for debugging.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

log = logging.getLogger(__name__)
BatchFn = Callable[[list[Any]], list[Any]]


class BatchStats:
    """Counters exposed by ``GET /health``: how many batches ran, of which sizes."""

    def __init__(self) -> None:
        self.batches = 0
        self.requests = 0
        self.largest = 0
        self.sizes: dict[int, int] = {}
        self.model_seconds = 0.0
        self.dropped = 0  # items whose request was answered (504) or abandoned before the model ran

    def add(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.requests += size
        self.largest = max(self.largest, size)
        self.sizes[size] = self.sizes.get(size, 0) + 1
        self.model_seconds += seconds

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "requests": self.requests, "largest_batch": self.largest,
                "mean_batch": round(self.requests / self.batches, 3) if self.batches else 0.0,
                "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
                "model_seconds": round(self.model_seconds, 3), "dropped": self.dropped}


class MicroBatcher:
    """Queue + worker around ``fn(items) -> results`` (one result per item, same order)."""

    def __init__(self, fn: BatchFn, executor: Executor, window_ms: float = 5.0, max_batch: int = 32,
                 enabled: bool = True, on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.fn, self.executor, self.on_batch = fn, executor, on_batch
        self.window, self.max_batch, self.enabled = max(0.0, window_ms) / 1000.0, max_batch, enabled
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: Any) -> Any:
        """The result for ``item``; raises what ``fn`` raised for its batch."""
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return (await self._run(loop, [item]))[0]
        self._ensure_worker(loop)
        future: asyncio.Future = loop.create_future()
        await self._queue.put((item, future))
        return await future

    def _ensure_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the worker on first use, and again on a new event loop (test clients make new ones)."""
        if self._loop is loop and self._worker is not None and not self._worker.done():
            return
        self._loop, self._queue = loop, asyncio.Queue()
        self._worker = loop.create_task(self._work(), name="fashionlab-micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, RuntimeError):
                pass
        self._worker = None

    async def _run(self, loop: asyncio.AbstractEventLoop, items: list[Any]) -> list[Any]:
        started = time.perf_counter()
        results = await loop.run_in_executor(self.executor, self.fn, items)
        seconds = time.perf_counter() - started
        self.stats.add(len(items), seconds)
        if self.on_batch is not None:
            self.on_batch(len(items), seconds)
        if len(results) != len(items):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        return results

    async def _collect(self) -> list[tuple[Any, asyncio.Future]]:
        """The first waiting item plus whatever arrives within the window, up to ``max_batch``."""
        batch = [await self._queue.get()]
        deadline = time.perf_counter() + self.window
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            collected = await self._collect()
            batch = [(item, fut) for item, fut in collected if not fut.done()]  # drop answered/abandoned ones
            self.stats.dropped += len(collected) - len(batch)
            if not batch:
                continue
            try:
                results = await self._run(loop, [item for item, _ in batch])
            except asyncio.CancelledError:
                for _, fut in batch:
                    if not fut.done():
                        fut.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - the batch fails, the worker lives on
                log.exception("batch of %d failed", len(batch))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results):
                if not fut.done():
                    fut.set_result(result)
