"""One exception type for every input problem a user can fix; the CLI prints it as one line."""
from __future__ import annotations


class FashionlabError(Exception):
    """A user-facing error: the message names the file/row and what is wrong."""


def at(path: object, line: int | None = None) -> str:
    """Format a location prefix such as ``label.csv line 214``."""
    return f"{path} line {line}" if line is not None else str(path)
