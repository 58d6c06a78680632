"""Per-epoch progress listeners: a hook for code that drives training from outside (sweeps, notebooks).

``with epoch_listener(fn): train(cfg)`` calls ``fn(epoch=, metric=, train_loss=)`` after every
validated fine-tune epoch (rank 0 only), once ``best.pt`` is up to date. A listener returning True
asks the run to stop after this epoch; the run then finishes normally (metrics, predictions).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[..., "bool | None"]
_listeners: list[Listener] = []


@contextmanager
def epoch_listener(fn: Listener) -> Iterator[None]:
    _listeners.append(fn)
    try:
        yield
    finally:
        _listeners.remove(fn)


def notify_epoch(epoch: int, metric: float, train_loss: float) -> bool:
    """Tell every listener; True when one of them asks to stop."""
    stop = False
    for fn in list(_listeners):
        stop = bool(fn(epoch=epoch, metric=metric, train_loss=train_loss)) or stop
    return stop
