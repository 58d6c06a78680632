"""Admission control: how many requests the service holds, and how much decoding runs at once.

A request is admitted (``Admission.admit``) before its body is read, or refused at once:

- 429 + ``Retry-After`` when ``max_queue`` requests are already in flight (admitted, not answered);
- 503 + ``Retry-After`` when the expected wait exceeds the timeout: requests ahead of it in the decode
  stage x measured decode seconds per item (divided by the decodes that run in parallel) + requests
  ahead in the model stage x measured model seconds per item (batch seconds / batch size). An idle
  server never refuses: with nothing ahead the expected wait is 0.

Decoding is bounded by a pixel budget (``PixelBudget``): a request waits, holding only its compressed
bytes, until the pixels it will decode fit; one image larger than the budget decodes alone. So what
the service holds is at most ``max_queue`` uploads (each <= ``--max-upload-mb``), the pixel budget in
decoding (about 4-8 bytes a pixel), and small model-size tensors in the batch queue.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

EMA = 0.2  # weight of the newest measurement in the running means


def _soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)`` on the event loop, from any thread; nothing once the loop is closed (shutdown)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass


class Refused(Exception):
    """Not admitted; ``status`` 429 or 503, ``retry_after`` whole seconds."""

    def __init__(self, status: int, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


class PixelBudget:
    """A first-come-first-served weighted semaphore over decoded pixels."""

    def __init__(self, budget: int) -> None:
        self.budget, self.used = max(1, int(budget)), 0
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()

    def _fits(self, pixels: int) -> bool:
        return self.used == 0 or self.used + pixels <= self.budget

    async def acquire(self, pixels: int) -> None:
        if not self._waiters and self._fits(pixels):
            self.used += pixels
            return
        entry = (pixels, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            if entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()  # the head may have changed
            elif entry[1].done() and not entry[1].cancelled():
                self.release(pixels)  # granted, then cancelled before it resumed
            raise

    def release(self, pixels: int) -> None:
        self.used -= pixels
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            pixels, future = self._waiters.popleft()
            if future.done():
                continue
            self.used += pixels
            future.set_result(None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)


class Ticket:
    """An admitted request; ``decoded()`` when it leaves the decode stage (once; later calls do nothing)."""

    def __init__(self, admission: "Admission") -> None:
        self._admission, self._decoding = admission, True

    def decoded(self) -> None:
        if self._decoding:
            self._decoding = False
            self._admission.decoding -= 1


@dataclass
class Admission:
    """Counters and running means behind the admission rules (``GET /health`` shows them)."""

    max_queue: int
    timeout_s: float
    decode_workers: int
    pixel_budget: int
    in_flight: int = 0
    decoding: int = 0  # admitted and not yet handed to the model (reading, waiting for pixels, decoding)
    decode_s: float | None = None  # running mean of one decode + preprocess, seconds
    pixels: float | None = None  # running mean of the pixels one decode holds
    model_s: float | None = None  # model seconds per item (running batch seconds / running batch size)
    _batch_s: float | None = None
    _batch_n: float | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"429": 0, "503": 0, "504": 0, "client_gone": 0})
    budget: PixelBudget = field(init=False)

    def __post_init__(self) -> None:
        self.budget = PixelBudget(self.pixel_budget)

    def decode_parallel(self) -> int:
        fit = int(self.pixel_budget // max(1.0, self.pixels or 1.0))
        return max(1, min(self.decode_workers, fit))

    def expected_wait(self) -> float:
        """Seconds a request arriving now would wait for the ones ahead of it."""
        decode = self.decoding * (self.decode_s or 0.0) / self.decode_parallel()
        model = (self.in_flight - self.decoding) * (self.model_s or 0.0)
        return decode + model

    def admit(self) -> None:
        """Raise ``Refused`` when the queue is full or the expected wait exceeds the timeout."""
        wait = self.expected_wait()
        if self.in_flight >= self.max_queue:
            self.counts["429"] += 1
            raise Refused(429, f"server busy: {self.in_flight} requests queued (--max-queue {self.max_queue}); "
                               "retry later", max(1, math.ceil(wait)))
        if wait > self.timeout_s:
            self.counts["503"] += 1
            raise Refused(503, f"server overloaded: expected wait {wait:.1f} s exceeds the {self.timeout_s:g} s "
                               "timeout; retry later", max(1, math.ceil(wait - self.timeout_s)))

    @asynccontextmanager
    async def ticket(self) -> AsyncIterator["Ticket"]:
        """One admitted request, from admission to its answer."""
        self.admit()
        self.in_flight += 1
        self.decoding += 1
        ticket = Ticket(self)
        try:
            yield ticket
        finally:
            ticket.decoded()
            self.in_flight -= 1

    async def decode(self, pool: Executor, pixels: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in ``pool`` once ``pixels`` fit the budget. Cancelled before it starts, it never
        runs; cancelled while running, its pixels stay counted until the thread really finishes."""
        await self.budget.acquire(pixels)

        def timed() -> tuple[Any, float]:
            started = time.perf_counter()
            return fn(*args), time.perf_counter() - started

        job = pool.submit(timed)
        try:
            result, seconds = await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            if job.cancel():  # had not started: it never will
                self.budget.release(pixels)
            else:
                loop = asyncio.get_running_loop()
                job.add_done_callback(lambda _: _soon(loop, self.budget.release, pixels))
            raise
        except BaseException:
            self.budget.release(pixels)
            raise
        self.budget.release(pixels)
        self.record_decode(seconds, pixels)
        return result

    def record_decode(self, seconds: float, pixels: int) -> None:
        self.decode_s = seconds if self.decode_s is None else (1 - EMA) * self.decode_s + EMA * seconds
        self.pixels = pixels if self.pixels is None else (1 - EMA) * self.pixels + EMA * pixels

    def record_batch(self, size: int, seconds: float) -> None:
        """Model seconds per item as a ratio of running sums (seconds / items), so one small batch,
        costly per item, does not swing the estimate the way a mean of per-batch ratios would."""
        self._batch_s = seconds if self._batch_s is None else (1 - EMA) * self._batch_s + EMA * seconds
        self._batch_n = size if self._batch_n is None else (1 - EMA) * self._batch_n + EMA * size
        self.model_s = self._batch_s / max(1.0, self._batch_n)

    def as_dict(self) -> dict[str, Any]:
        return {"max_queue": self.max_queue, "in_flight": self.in_flight, "decoding": self.decoding,
                "decode_workers": self.decode_workers, "pixel_budget": self.pixel_budget,
                "pixels_decoding": self.budget.used, "waiting_for_pixels": self.budget.waiting,
                "decode_s": round(self.decode_s or 0.0, 4), "model_s_per_item": round(self.model_s or 0.0, 4),
                "expected_wait_s": round(self.expected_wait(), 3), "refused_or_dropped": dict(self.counts)}
