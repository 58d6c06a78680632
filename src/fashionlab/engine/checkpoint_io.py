"""Lightning's ``last.ckpt`` written atomically beside itself, and read back with one-line errors.

Lightning's own ``TorchCheckpointIO`` writes through fsspec's transaction: a temporary file in the
system temp folder, then a move. Across filesystems that move is a copy, and a full disk leaves half a
``last.ckpt`` behind (the run can then not be resumed). ``AtomicCheckpointIO`` writes the temporary
file in the checkpoint's own folder and renames it (``fashionlab.io.atomic_open``): a failed save
keeps the previous ``last.ckpt`` and is one line naming it. A truncated or damaged checkpoint at
``--resume`` is one line as well, never torch's message recommending ``weights_only=False``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..errors import FashionlabError
from ..io import atomic_open, why_unreadable


class AtomicCheckpointIO(TorchCheckpointIO):
    """``plugins=[AtomicCheckpointIO()]`` on the Trainer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_open(Path(path), "wb") as handle:
            torch.save(checkpoint, handle)

    def load_checkpoint(self, path: Any, map_location: Callable | None = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FashionlabError(f"{path}: checkpoint not found")
        try:
            return torch.load(path, map_location=map_location, weights_only=True if weights_only is None else
                              weights_only)
        except Exception as exc:  # noqa: BLE001 - any failure to read it means the file is unusable
            raise FashionlabError(f"{path}: cannot resume from this checkpoint ({why_unreadable(exc)}); delete it to "
                                  "start the run over, or train into a new --out folder") from None
