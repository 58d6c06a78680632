"""Atomic file writes and safe checkpoint reads: a crash or a full disk never leaves a half-written output.

Every file fashionlab writes goes through ``atomic_open`` (or ``write_text`` / ``write_json``): the
data goes to a temporary file in the target's own folder (same filesystem, so the final
``os.replace`` is atomic), is flushed and fsync'ed, then renamed over the target. On a full disk
(ENOSPC / EDQUOT), a read-only filesystem (EROFS) or a permission error (EACCES / EPERM) the
temporary file is removed, the previous target is left as it was, and the error is one line
(``FashionlabError``) naming the target. ``check_output`` runs the same checks before a long
computation, so ``predict`` fails in a second rather than after predicting everything.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def write_error(path: Path, exc: OSError, existed: bool | None = None) -> Exception:
    """One line for a failed write of ``path``; other OSErrors are returned unchanged."""
    from .errors import FashionlabError

    if exc.errno not in WRITE_ERRNOS:
        return exc
    why = {errno.ENOSPC: "no space left on the device (disk full)", errno.EDQUOT: "disk quota exceeded",
           errno.EROFS: "the folder is on a read-only filesystem",
           errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}[exc.errno]
    existed = path.exists() if existed is None else existed
    kept = "the previous file is unchanged" if existed else "nothing was written"
    fix = "free some space and run again" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else \
        "choose a folder you can write to"
    return FashionlabError(f"{path}: cannot write: {why}; {kept}; {fix}")


def _write_cause(exc: BaseException) -> OSError | None:
    """The full-disk / read-only / permission OSError behind ``exc`` (torch.save, for one, reports a
    failed write as a RuntimeError of its own with the OSError as its context), or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", durable: bool = True, **kwargs: Any) -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    ``durable=False`` skips the fsync (bulk files such as generated images: still never half-written
    after a crash of the process, but not guaranteed on disk after a power cut)."""
    path = Path(path)
    existed = path.exists()
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
    except Exception as exc:
        cause = _write_cause(exc)
        if cause is None:
            raise
        raise write_error(path, cause, existed) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_image(image: Any, path: str | Path, fmt: str, **kwargs: Any) -> Path:
    """A PIL image written atomically (``image.save`` into ``atomic_open``, no fsync: bulk data)."""
    with atomic_open(path, "wb", durable=False) as handle:
        image.save(handle, format=fmt, **kwargs)
    return Path(path)


def check_output(path: str | Path, folder: bool = False, option: str = "--out") -> Path:
    """Fail now, in one line, when ``path`` cannot be written: an existing folder where a file is due
    (or a file where a folder is due), a parent that is a file, a read-only or unwritable folder."""
    from .errors import FashionlabError

    path = Path(path)
    if not folder and path.is_dir():
        raise FashionlabError(f"{option} {path}: is a folder; give a file name, e.g. {path / 'predictions.csv'}")
    if folder and path.exists() and not path.is_dir():
        raise FashionlabError(f"{option} {path}: is a file; give a folder")
    parent = path if folder else path.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise FashionlabError(f"{option} {path}: {existing} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".fashionlab-write-check.", dir=existing)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        failure = write_error(path, exc)
        raise (failure if failure is not exc else
               FashionlabError(f"{option} {path}: cannot write there ({exc.strerror})")) from None
    return path


def load_torch(path: str | Path, message: str = "not a fashionlab weights file", mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)`` whose failures are one line, ``PATH: MESSAGE (why)``.

    torch's own message for a file holding code recommends ``weights_only=False``, which would run that
    code; it never reaches the user.
    """
    import torch

    from .errors import FashionlabError

    path = Path(path)
    if not path.is_file():
        raise FashionlabError(f"{path}: {'checkpoint' if 'checkpoint' in message else 'weights'} file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - every decoding failure is a problem with the user's file
        raise FashionlabError(f"{path}: {message} ({why_unreadable(exc)})") from None


def why_unreadable(exc: Exception) -> str:
    text = str(exc).lower()
    if "unsupported global" in text:
        return "it holds Python objects other than tensors; refused for safety"
    if isinstance(exc, EOFError) or any(k in text for k in ("central directory", "zip archive", "truncat",
                                                            "corrupt", "unexpected end", "eof")):
        return "truncated or damaged file"
    if any(k in text for k in ("unsupported operand", "invalid load key", "magic number")):
        return "not a PyTorch file"
    return f"unreadable: {type(exc).__name__}"
