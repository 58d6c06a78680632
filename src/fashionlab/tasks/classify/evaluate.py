"""``evaluate classify``: a prediction CSV (image,label,score) against a truth CSV (image,label)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import FashionlabError
from .cost import mean_cost, read_cost_csv, resolve_cost_matrix
from .metric import classification_report


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FashionlabError(f"{path}: cannot parse CSV ({exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FashionlabError(f"{path} line 1: missing column(s) {missing}; header is {list(frame.columns)}")
    dup = frame["image"].duplicated()
    if dup.any():
        raise FashionlabError(f"{path} line {int(np.argmax(dup.values)) + 2}: duplicate image '{frame['image'][dup].iloc[0]}'")
    return frame


def evaluate_classify_files(pred: Path, truth: Path, cost_path: Path | None = None) -> dict[str, Any]:
    """Accuracy, per-class recall and confusion; with a cost CSV also the expected cost."""
    p, t = _read(pred, ["image", "label"]), _read(truth, ["image", "label"])
    merged = t.merge(p[["image", "label"]], on="image", how="left", suffixes=("", "_pred"), indicator=True)
    absent = merged["_merge"] == "left_only"
    if absent.any():
        row = int(np.argmax(absent.values))
        raise FashionlabError(f"{truth} line {row + 2}: image '{merged['image'].iloc[row]}' has no prediction in {pred}")
    known = set(t["label"]) | (set(read_cost_csv(cost_path)[0]) if cost_path is not None else set())
    unknown = p["image"].isin(set(t["image"])) & ~p["label"].isin(known)
    if unknown.any():
        row = int(np.argmax(unknown.values))
        raise FashionlabError(f"{pred} line {row + 2}: label '{p['label'].iloc[row]}' of image '{p['image'].iloc[row]}' "
                              f"is not a class of the truth ({', '.join(sorted(known)[:10])}"
                              f"{', ...' if len(known) > 10 else ''})")
    classes = sorted(set(t["label"]) | set(merged["label_pred"]))
    index = {c: i for i, c in enumerate(classes)}
    report = classification_report(merged["label"].map(index).to_numpy(), merged["label_pred"].map(index).to_numpy(),
                                   classes)
    if cost_path is not None:
        matrix = resolve_cost_matrix(str(cost_path), classes)
        report["expected_cost"] = mean_cost(merged["label"].map(index).to_numpy(),
                                            merged["label_pred"].map(index).to_numpy(), matrix)
    return {**report, "classes": classes, "n_images": int(len(merged))}
