"""``POST /search``: the hook to the retrieval task's gallery search.

``SearchHook(index)`` decides once, at start-up, whether search can be served:

- no ``--index``: 404, "no gallery index loaded";
- ``fashionlab.tasks.retrieval.search`` (or FAISS) not importable: 501, with the import error;
- otherwise the index and its model are loaded once, by the retrieval task's ``Searcher`` (a broken
  folder stops the server at start-up with its one-line error), and each query image is written to
  a temporary file and ranked by ``Searcher.search_paths``.

Results are ``{"id", "score", "category", "image"}`` best first; ``image`` is ``/gallery/{id}``
when the gallery file recorded in the index's ``gallery.csv`` exists on this machine.
"""
from __future__ import annotations

import csv
import importlib
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import FashionlabError

RETRIEVAL_MODULE = "fashionlab.tasks.retrieval.search"
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}


class SearchUnavailable(Exception):
    """Search cannot be served; ``status`` is 404 (no index) or 501 (no retrieval support)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def retrieval_module() -> tuple[Any | None, str]:
    """(the retrieval search module, "") or (None, why it cannot be imported)."""
    try:
        module = importlib.import_module(RETRIEVAL_MODULE)
        module._faiss()  # noqa: SLF001 - FAISS is imported lazily there; fail now, not per request
    except (ImportError, FashionlabError) as exc:
        return None, f"retrieval search is not available in this install ({exc})"
    except AttributeError:
        pass
    if not hasattr(module, "Searcher"):
        return None, f"{RETRIEVAL_MODULE} has no Searcher"
    return module, ""


class SearchHook:
    """Gallery search for the server, or the reason it is unavailable."""

    def __init__(self, index: Path | None, device: str = "cpu") -> None:
        self.index, self.device = (Path(index) if index is not None else None), device
        self.module, self.reason, self.status = None, "", 200
        self.paths: dict[str, Path] = {}
        self.categories: dict[str, str] = {}
        if self.index is None:
            self.status, self.reason = 404, "no gallery index loaded: start the server with --index INDEX_FOLDER"
            return
        self.module, reason = retrieval_module()
        if self.module is None:
            self.status, self.reason = 501, reason
            return
        # the index and its model are loaded once here; a broken folder raises FashionlabError naming it
        self.searcher = self.module.Searcher(self.index, device=device)
        self._read_gallery()

    @property
    def available(self) -> bool:
        return self.status == 200

    def _read_gallery(self) -> None:
        table = self.index / "gallery.csv"
        if not table.is_file():
            return
        with open(table, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                item = row.get("id", "")
                self.categories[item] = row.get("category", "") or ""
                path = Path(row.get("path", "") or "")
                if row.get("path") and path.is_file():
                    self.paths[item] = path

    def describe(self) -> dict[str, Any]:
        return {"available": self.available, "index": str(self.index) if self.index else None,
                "reason": self.reason or None, "gallery": len(self.categories)}

    def gallery_image(self, item: str) -> Path | None:
        """The file of gallery item ``item`` (only ids listed in the index's gallery.csv)."""
        return self.paths.get(item)

    def __call__(self, data: bytes, fmt: str, top: int = 10, category: str | None = None) -> list[dict[str, Any]]:
        """Rank the gallery for one query image (``data`` already decoded once, ``fmt`` its format)."""
        if not self.available:
            raise SearchUnavailable(self.status, self.reason)
        with tempfile.TemporaryDirectory(prefix="fashionlab-query-") as folder:
            query = Path(folder) / f"query{SUFFIXES.get(fmt.upper(), '.png')}"
            query.write_bytes(data)
            results = self.searcher.search_paths([query], ["query"], top=top, category=category or None, batch=1,
                                                 workers=0)
        _, ids, scores = results[0]
        return [{"id": item, "score": round(float(score), 6), "category": self.categories.get(item, ""),
                 "image": f"/gallery/{quote(item)}" if item in self.paths else None} for item, score in zip(ids, scores)]
