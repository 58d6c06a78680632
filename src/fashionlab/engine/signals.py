"""Stop a training run cleanly on SIGTERM or Ctrl-C: finish the current batch, keep ``last.ckpt``,
and leave with the conventional exit status (143 / 130) and a one-line ``--resume`` hint.

Lightning notes a SIGTERM itself (``trainer.received_sigterm``) but turns Ctrl-C into ``exit(1)``;
here SIGINT is caught too, and a second Ctrl-C interrupts at once. DataLoader workers ignore SIGINT
(``predictor.make_loader``), so a terminal's Ctrl-C does not kill them under the running batch.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import FashionlabError

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class RunStopped(FashionlabError):
    """Training stopped on a signal; ``exit_code`` is what a shell expects for it."""

    def __init__(self, name: str, run: Path, task: str) -> None:
        super().__init__(f"stopped by {name}: weights so far are in {run}/weights; continue with "
                         f"`fashionlab train {task} --resume {run}`")
        self.exit_code = EXIT_CODES.get(name, 1)


@dataclass
class Stopped:
    signal: str = ""


@contextmanager
def stop_on_signals(trainer) -> Iterator[Stopped]:
    """While training: SIGINT asks the trainer to stop after this batch (a second one interrupts);
    on exit, ``Stopped.signal`` names the signal that stopped the run (SIGTERM as Lightning saw it)."""
    stopped = Stopped()
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    def on_sigint(signum, frame) -> None:
        if stopped.signal:
            raise KeyboardInterrupt
        stopped.signal = "SIGINT"
        trainer.should_stop = True

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stopped
    except SIGTERMException:  # Lightning's SystemExit after a SIGTERM: it would exit 0, as if the run had finished
        stopped.signal = "SIGTERM"
    finally:
        signal.signal(signal.SIGINT, previous)
        if not stopped.signal and getattr(trainer, "received_sigterm", False):
            stopped.signal = "SIGTERM"
