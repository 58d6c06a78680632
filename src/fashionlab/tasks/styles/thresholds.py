"""Per-label decision thresholds that maximise the sample-averaged F2 of ``metric.py``.

Tune them on validation or out-of-fold probabilities, never on the test set.

* greedy (default): coordinate search from 0.5. Each pass visits every label and tries every
  candidate threshold (a grid 0.02..0.98 plus the label's unique probabilities, thinned to at most
  ``MAX_CANDIDATES`` quantiles), keeping the others fixed; a change is kept only if the sample F2
  strictly improves. Up to ``passes`` passes, stopping early when nothing changes. The chosen
  threshold sits midway between the chosen candidate and the next lower probability, so the
  predictions are the same but with a margin.
* lbfgs: ``scipy.optimize.minimize(method="L-BFGS-B")`` on a smooth surrogate, each prediction
  relaxed to sigmoid((p - t) / T), bounds [0.01, 0.99], started from the greedy result (or 0.5),
  annealing T = 0.1, 0.05, 0.02. The surrogate optimum is kept only if the *true* F2 is higher than
  at the start, so it never makes F2 worse than its starting point (and so than 0.5).
* none: every threshold 0.5.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FashionlabError
from ...io import write_json
from .metric import DEFAULT_THRESHOLD, read_label_matrix, sample_f2

log = logging.getLogger(__name__)
METHODS = ("greedy", "lbfgs", "none")
GRID = np.round(np.arange(0.02, 0.98 + 1e-9, 0.02), 2)
MAX_CANDIDATES = 256


def _row_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = (pred & truth).sum(1).astype(np.float64)
    fp = (pred & ~truth).sum(1).astype(np.float64)
    return tp, fp, truth.sum(1).astype(np.float64)


def _f2_rows(tp: np.ndarray, fp: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """F2 = 5tp / (5tp + 4fn + fp) = 5tp / (tp + fp + 4·positives); 0 where the denominator is 0."""
    denom = tp + fp + 4.0 * pos
    return np.divide(5.0 * tp, denom, out=np.zeros(np.broadcast(tp, denom).shape), where=denom > 0)


def _check(probs: Any, truth: Any, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(probs, dtype=np.float64), np.asarray(truth)
    if p.ndim != 2 or p.shape != t.shape:
        raise FashionlabError(f"probabilities {p.shape} and truth {t.shape} must be the same (samples x labels) shape")
    if p.shape[1] != len(labels):
        raise FashionlabError(f"{p.shape[1]} probability columns but {len(labels)} labels")
    if len(p) == 0:
        raise FashionlabError("no samples to tune thresholds on")
    return p, t.astype(bool)


def _candidates(column: np.ndarray) -> np.ndarray:
    unique = np.unique(column)
    if len(unique) > MAX_CANDIDATES:
        unique = np.unique(np.quantile(column, np.linspace(0, 1, MAX_CANDIDATES)))
    return np.unique(np.concatenate([GRID, unique]))


def greedy_thresholds(probs: np.ndarray, truth: np.ndarray, passes: int = 3) -> np.ndarray:
    """Coordinate search from 0.5 (see the module docstring); returns thresholds [K]."""
    n, k = probs.shape
    thr = np.full(k, DEFAULT_THRESHOLD)
    pred = probs >= thr
    tp, fp, pos = _row_counts(pred, truth)
    best = float(_f2_rows(tp, fp, pos).mean())
    for _ in range(passes):
        changed = False
        for j in range(k):
            col, t_j, p_j = probs[:, j], truth[:, j], pred[:, j]
            base_tp, base_fp = tp - (p_j & t_j), fp - (p_j & ~t_j)
            cands = _candidates(col)
            on = col[:, None] >= cands[None, :]  # [N, C]
            scores = _f2_rows(base_tp[:, None] + (on & t_j[:, None]), base_fp[:, None] + (on & ~t_j[:, None]),
                              pos[:, None]).mean(0)
            c = int(np.argmax(scores))
            if scores[c] > best + 1e-12:
                lower = col[col < cands[c]]
                thr[j] = (cands[c] + lower.max()) / 2 if len(lower) else cands[c]
                pred[:, j] = col >= thr[j]
                tp, fp = base_tp + (pred[:, j] & t_j), base_fp + (pred[:, j] & ~t_j)
                best, changed = float(scores[c]), True
        if not changed:
            break
    return thr


def _surrogate(thr: np.ndarray, probs: np.ndarray, truth: np.ndarray, temp: float) -> tuple[float, np.ndarray]:
    """-mean soft sample F2 and its gradient in the thresholds."""
    s = 1.0 / (1.0 + np.exp(-np.clip((probs - thr[None, :]) / temp, -60, 60)))
    y = truth.astype(np.float64)
    tp, fp, pos = (y * s).sum(1), ((1 - y) * s).sum(1), y.sum(1)
    denom = tp + fp + 4.0 * pos + 1e-9
    f2 = 5.0 * tp / denom
    d_s = np.where(truth, (5.0 * (fp + 4.0 * pos) / denom ** 2)[:, None], (-5.0 * tp / denom ** 2)[:, None])
    grad = (d_s * (-s * (1 - s) / temp)).sum(0) / len(probs)
    return -float(f2.mean()), -grad


def lbfgs_thresholds(probs: np.ndarray, truth: np.ndarray, start: np.ndarray | None = None,
                     temperatures: tuple[float, ...] = (0.1, 0.05, 0.02)) -> np.ndarray:
    """L-BFGS-B on the sigmoid-relaxed F2; returns the start when the true F2 does not improve."""
    from scipy.optimize import minimize

    start = np.full(probs.shape[1], DEFAULT_THRESHOLD) if start is None else np.asarray(start, dtype=np.float64)
    x = np.clip(start, 0.01, 0.99)
    for temp in temperatures:
        res = minimize(_surrogate, x, args=(probs, truth, temp), jac=True, method="L-BFGS-B",
                       bounds=[(0.01, 0.99)] * len(x), options={"maxiter": 200})
        x = np.asarray(res.x, dtype=np.float64)
    better = sample_f2(truth, probs >= x[None, :]) > sample_f2(truth, probs >= start[None, :])
    return x if better else start


def search_thresholds(probs: Any, truth: Any, labels: list[str], method: str = "greedy") -> dict[str, float]:
    """Per-label thresholds maximising sample F2 of ``truth`` [N, K] given ``probs`` [N, K]."""
    if method not in METHODS:
        raise FashionlabError(f"unknown threshold search '{method}'; choose one of {', '.join(METHODS)}")
    p, t = _check(probs, truth, labels)
    if method == "none":
        thr = np.full(len(labels), DEFAULT_THRESHOLD)
    elif method == "greedy":
        thr = greedy_thresholds(p, t)
    else:
        thr = lbfgs_thresholds(p, t, start=greedy_thresholds(p, t))
    return {label: float(v) for label, v in zip(labels, thr)}


def apply_thresholds(probs: Any, thresholds: dict[str, float], labels: list[str]) -> np.ndarray:
    """0/1 matrix: probability >= the label's threshold (0.5 for labels the dict omits)."""
    unknown = sorted(set(thresholds) - set(labels))
    if unknown:
        raise FashionlabError(f"thresholds: unknown label(s) {', '.join(unknown[:5])}; labels are {', '.join(labels)}")
    for label, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise FashionlabError(f"thresholds: '{label}' is {value!r}; expected a number in [0, 1]")
    thr = np.array([float(thresholds.get(label, DEFAULT_THRESHOLD)) for label in labels])
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(labels):
        raise FashionlabError(f"probabilities of shape {p.shape} do not have {len(labels)} label columns")
    return (p >= thr[None, :]).astype(np.int64)


def tune(probs: Any, truth: Any, labels: list[str], method: str = "greedy") -> dict[str, Any]:
    """Search thresholds and report the sample F2 at 0.5 and with the tuned thresholds."""
    thresholds = search_thresholds(probs, truth, labels, method)
    before = sample_f2(truth, np.asarray(probs) >= DEFAULT_THRESHOLD)
    after = sample_f2(truth, apply_thresholds(probs, thresholds, labels))
    return {"method": method, "f2_before": before, "f2_after": after, "f2_crossfit": crossfit_f2(probs, truth, labels,
                                                                                                 method),
            "thresholds": thresholds}


def crossfit_f2(probs: Any, truth: Any, labels: list[str], method: str = "greedy", seed: int = 0) -> float:
    """The honest F2 of tuned thresholds: tune on one random half, score on the other, both ways, averaged.

    ``f2_after`` scores the thresholds on the rows they were tuned on, which is optimistic.
    """
    probs, truth = np.asarray(probs, dtype=np.float64), np.asarray(truth)
    if len(probs) < 4:
        return float("nan")
    order = np.random.default_rng(seed).permutation(len(probs))
    halves = (order[: len(order) // 2], order[len(order) // 2:])
    hits = []
    for fit, held in (halves, halves[::-1]):
        thr = search_thresholds(probs[fit], truth[fit], labels, method)
        hits.append(sample_f2(truth[held], apply_thresholds(probs[held], thr, labels)) * len(held))
    return float(sum(hits) / len(probs))


def save_thresholds(path: str | Path, thresholds: dict[str, float]) -> Path:
    """Write ``{label: threshold}`` JSON atomically (read back by ``metric.read_thresholds``)."""
    return write_json(path, {label: float(v) for label, v in thresholds.items()})


def read_aligned(pred_path: Path, truth_path: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(images, labels, probs, truth) with the prediction rows/columns in the truth's order.

    Only images present in both files are used (a validation or out-of-fold PROBS file covers a
    subset of the full label file); no image in common is an error.
    """
    t_images, t_labels, truth = read_label_matrix(truth_path, binary=True)
    p_images, p_labels, probs = read_label_matrix(pred_path, binary=False)
    missing = sorted(set(t_labels) - set(p_labels))
    extra = sorted(set(p_labels) - set(t_labels))
    if missing or extra:
        raise FashionlabError(f"{pred_path} line 1: label columns differ from {truth_path} "
                              f"(missing {missing[:5]}, unknown {extra[:5]})")
    row = {name: i for i, name in enumerate(p_images)}
    no_pred = [name for name in t_images if name not in row]
    if no_pred:
        keep = [i for i, name in enumerate(t_images) if name in row]
        if not keep:
            raise FashionlabError(f"{pred_path}: no image in common with {truth_path}")
        log.info("%s: scoring the %d truth rows that have a prediction", pred_path, len(keep))
        t_images, truth = [t_images[i] for i in keep], truth[keep]
    col = {name: j for j, name in enumerate(p_labels)}
    probs = probs[np.ix_([row[n] for n in t_images], [col[n] for n in t_labels])]
    return t_images, t_labels, probs, truth


def tune_thresholds_files(probs_csv: str | Path, truth_csv: str | Path, out_json: str | Path,
                          method: str = "greedy") -> dict[str, Any]:
    """``fashionlab thresholds styles --pred P --truth T --out T.json``: tune on P vs T, write T.json.

    Rows are matched by image name; truth rows without a prediction are left out, so a
    validation/out-of-fold PROBS file can be tuned against the full label file.
    """
    _, labels, probs, truth = read_aligned(Path(probs_csv), Path(truth_csv))
    report = tune(probs, truth, labels, method)
    save_thresholds(out_json, report["thresholds"])
    return {**report, "images": int(len(probs)), "out": str(out_json)}
