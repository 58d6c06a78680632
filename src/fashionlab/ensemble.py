"""``fashionlab ensemble``: combine several runs' probability CSVs (``image,<column...>``), task-agnostic.

Inputs are out-of-fold (OOF) or validation probability files of M models with the same images and
columns (styles PROBS: one probability per label; classify: one per class), optionally their test
files in the same model order. Methods:

* mean / weighted: (weighted) average of the probabilities; weights are renormalised over kept models.
* vote: multi-label: share of models whose probability >= their threshold (0.5 or a per-model JSON),
  so >= 0.5 is a majority (a tie counts as positive); single-label: share of models whose argmax is
  each class (ties broken by the mean probability).
* top_n (needs truth): multi-label: for each label, average only the N models with the best OOF F2 on
  that label; single-label: average the N models with the best OOF accuracy.
* stack (needs truth, xgboost): per label (multi-label; one multi-class model for single-label) an
  XGBoost model on the concatenated probabilities of all kept models, trained 5-fold on the OOF rows
  -> stacked OOF predictions; test rows get the mean probability of the 5 fold models.

Before combining, models whose flattened probabilities correlate (Pearson) above ``corr_threshold``
with an already kept model are pruned; models are visited best first by OOF score when truth is
given, else in the order given. Scores of selections made on the same OOF rows (top_n, pruning,
weights tuned there) are optimistic; the stacked OOF score is out-of-fold at the second level.
Outputs: ``out`` (and ``test_out``) in the input format, ``<out stem>_correlation.csv/.json`` and
``<out stem>_report.json``.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import FashionlabError, at
from .io import atomic_open, write_json
from .tasks.styles.metric import per_label_f2, read_label_matrix, read_thresholds, sample_f2

log = logging.getLogger(__name__)
METHODS = ("mean", "weighted", "vote", "top_n", "stack")


def read_probability_files(paths: list[Path]) -> tuple[list[str], list[str], np.ndarray]:
    """(images, columns, probs [M, N, K]) with every file's rows and columns in the first file's order."""
    if not paths:
        raise FashionlabError("ensemble: no prediction files given")
    images, columns, first = read_label_matrix(paths[0], binary=False)
    stack = [first]
    for path in paths[1:]:
        imgs, cols, probs = read_label_matrix(path, binary=False)
        if set(cols) != set(columns):
            diff = sorted(set(cols) ^ set(columns))[:5]
            raise FashionlabError(f"{at(path, 1)}: columns differ from {paths[0]} ({diff})")
        if set(imgs) != set(images):
            diff = sorted(set(imgs) ^ set(images))
            raise FashionlabError(f"{path}: images differ from {paths[0]} (e.g. '{diff[0]}')")
        row, col = {n: i for i, n in enumerate(imgs)}, {n: j for j, n in enumerate(cols)}
        stack.append(probs[np.ix_([row[n] for n in images], [col[n] for n in columns])])
    return images, columns, np.stack(stack)


def read_truth(path: Path, images: list[str], columns: list[str], multilabel: bool) -> np.ndarray:
    """Multi-label: 0/1 matrix [N, K] (``image,<labels>``). Single-label: class index [N] from
    ``image,label`` or a one-hot ``image,<classes>`` file. Rows in ``images`` order."""
    if not Path(path).is_file():
        raise FashionlabError(f"{path}: no such file")
    header = list(pd.read_csv(path, dtype=str, keep_default_na=False, nrows=0).columns)
    if not multilabel and header[:2] == ["image", "label"]:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        index = {c: j for j, c in enumerate(columns)}
        found = dict(zip(table["image"], table["label"]))
        bad = sorted(set(table["label"]) - set(index))
        if bad:
            raise FashionlabError(f"{path}: class(es) {bad[:5]} are not prediction columns {columns[:10]}")
        missing = [n for n in images if n not in found]
        if missing:
            raise FashionlabError(f"{path}: no truth for image '{missing[0]}'")
        return np.array([index[found[n]] for n in images], dtype=np.int64)
    t_images, t_cols, truth = read_label_matrix(path, binary=True)
    if set(t_cols) != set(columns):
        diff = sorted(set(t_cols) ^ set(columns))[:5]
        raise FashionlabError(f"{at(path, 1)}: columns differ from the predictions ({diff})")
    row, col = {n: i for i, n in enumerate(t_images)}, {n: j for j, n in enumerate(t_cols)}
    missing = [n for n in images if n not in row]
    if missing:
        raise FashionlabError(f"{path}: no truth for image '{missing[0]}'")
    truth = truth[np.ix_([row[n] for n in images], [col[n] for n in columns])]
    return truth.astype(np.int64) if multilabel else truth.argmax(1)


def score(probs: np.ndarray, truth: np.ndarray, multilabel: bool) -> float:
    """Sample F2 at 0.5 (multi-label) or accuracy (single-label)."""
    return sample_f2(truth, probs >= 0.5) if multilabel else float((probs.argmax(1) == truth).mean())


def correlation(stack: np.ndarray) -> np.ndarray:
    """Pearson correlation of the models' flattened probabilities [M, M] (a constant model: 0)."""
    flat = stack.reshape(len(stack), -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(flat) if len(flat) > 1 else np.ones((1, 1))
    corr = np.nan_to_num(np.atleast_2d(corr), nan=0.0)
    np.fill_diagonal(corr, 1.0)
    return corr


def prune(corr: np.ndarray, scores: list[float] | None, threshold: float) -> tuple[list[int], list[dict[str, Any]]]:
    """Kept model indices (in input order) and the pruned ones with the kept model they duplicate."""
    order = sorted(range(len(corr)), key=lambda i: -scores[i]) if scores is not None else list(range(len(corr)))
    kept: list[int] = []
    pruned: list[dict[str, Any]] = []
    for i in order:
        twin = next((k for k in kept if corr[i, k] > threshold), None)
        if twin is None:
            kept.append(i)
        else:
            pruned.append({"model": i, "correlated_with": twin, "r": float(corr[i, twin])})
    return sorted(kept), pruned


def combine_mean(stack: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    w = np.ones(len(stack)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != len(stack) or (w < 0).any() or w.sum() <= 0:
        raise FashionlabError(f"ensemble: need {len(stack)} non-negative weights with a positive sum, got {list(w)}")
    return np.tensordot(w / w.sum(), stack, axes=1)


def combine_vote(stack: np.ndarray, multilabel: bool, thresholds: np.ndarray | None = None) -> np.ndarray:
    """Multi-label: share of models voting positive [N, K]. Single-label: share of argmax votes per class."""
    if multilabel:
        thr = np.full(stack.shape[::2], 0.5) if thresholds is None else thresholds  # [M, K]
        return (stack >= thr[:, None, :]).mean(0)
    m, n, k = stack.shape
    votes = np.zeros((n, k))
    for winners in stack.argmax(2):
        votes[np.arange(n), winners] += 1.0 / m
    return votes + 1e-6 * stack.mean(0)


def select_top_n(stack: np.ndarray, truth: np.ndarray, multilabel: bool, top_n: int) -> np.ndarray:
    """Boolean [M, K]: which models are averaged for each column (each label's top-N by OOF F2)."""
    m, _, k = stack.shape
    n = max(1, min(top_n, m))
    if multilabel:
        per = np.stack([per_label_f2(truth, s >= 0.5) for s in stack])  # [M, K]
        order = np.argsort(-per, axis=0, kind="stable")[:n]  # [n, K]
        chosen = np.zeros((m, k), dtype=bool)
        chosen[order, np.arange(k)[None, :]] = True
        return chosen
    best = np.argsort([-score(s, truth, False) for s in stack], kind="stable")[:n]
    chosen = np.zeros((m, k), dtype=bool)
    chosen[best] = True
    return chosen


def combine_top_n(stack: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    w = chosen.astype(np.float64)[:, None, :]
    return (stack * w).sum(0) / w.sum(0)


def _folds(truth: np.ndarray, multilabel: bool, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    x = np.zeros((len(truth), 1))
    if multilabel:
        try:
            from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

            return list(MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x, truth))
        except ImportError:
            return list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x))
    counts = np.bincount(truth)
    if counts[counts > 0].min() >= n_folds:
        return list(StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x, truth))
    return list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x))


def _xgb(seed: int, rows: int, **kwargs: Any):
    """100 trees of depth 3; 2 threads only on large inputs (thread overhead dominates small ones)."""
    try:
        from xgboost import XGBClassifier
    except ImportError:
        raise FashionlabError("ensemble method 'stack' needs xgboost: pip install xgboost") from None
    return XGBClassifier(n_estimators=100, max_depth=3, learning_rate=0.1, n_jobs=2 if rows >= 10000 else 1,
                         random_state=seed, verbosity=0, **kwargs)


def _fit_predict(x: np.ndarray, y: np.ndarray, parts: list[np.ndarray], width: int, seed: int) -> list[np.ndarray]:
    """One XGBoost model on (x, y); probabilities [rows, width] for each array in ``parts``.
    A constant target (or a class absent from the fold) gets probability 0 for the absent values."""
    classes = np.unique(y)
    if len(classes) == 1:
        const = np.zeros(width)
        const[int(classes[0]) if width > 1 else 0] = 1.0 if width > 1 else float(classes[0])
        return [np.tile(const, (len(p), 1)) for p in parts]
    code = {c: i for i, c in enumerate(classes)}
    model = _xgb(seed, len(x), **({"objective": "binary:logistic"} if width == 1 else {"objective": "multi:softprob"}))
    model.fit(x, np.array([code[v] for v in y]))
    out = []
    for p in parts:
        proba = model.predict_proba(p)
        if width == 1:
            out.append(proba[:, 1:2])
        else:
            full = np.zeros((len(p), width))
            full[:, classes.astype(int)] = proba
            out.append(full)
    return out


def stack_predict(oof: np.ndarray, truth: np.ndarray, test: np.ndarray | None, multilabel: bool,
                  n_folds: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Stacked OOF predictions [N, K] and (optionally) test predictions (mean of the fold models)."""
    m, n, k = oof.shape
    features = oof.transpose(1, 0, 2).reshape(n, m * k)
    test_x = test.transpose(1, 0, 2).reshape(test.shape[1], m * k) if test is not None else None
    n_folds = max(2, min(n_folds, n))
    stacked = np.zeros((n, k))
    test_out = np.zeros((test_x.shape[0], k)) if test_x is not None else None
    targets = [truth[:, j] for j in range(k)] if multilabel else [truth]
    for tr, va in _folds(truth, multilabel, n_folds, seed):
        for j, y in enumerate(targets):
            parts = [features[va]] + ([test_x] if test_x is not None else [])
            got = _fit_predict(features[tr], y[tr], parts, 1 if multilabel else k, seed)
            cols = [j] if multilabel else list(range(k))
            stacked[np.ix_(va, cols)] = got[0]
            if test_out is not None:
                test_out[:, cols] += got[1] / n_folds
    return stacked, test_out


def write_probabilities(out: Path, images: list[str], columns: list[str], probs: np.ndarray) -> Path:
    """``image,<columns>`` with 6 decimals, the format of the single-model files (atomic)."""
    with atomic_open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image", *columns])
        for name, row in zip(images, np.clip(probs, 0.0, 1.0)):
            writer.writerow([name, *(f"{v:.6f}" for v in row)])
    return out


def ensemble_files(preds: list[Path], out: Path, method: str, truth: Path | None = None,
                   weights: list[float] | None = None, test_preds: list[Path] | None = None,
                   test_out: Path | None = None, corr_threshold: float = 0.9, top_n: int = 2,
                   task: str = "styles", thresholds: list[Path] | None = None, seed: int = 0) -> dict[str, Any]:
    """Combine ``preds`` (OOF/validation) and ``test_preds`` with ``method``; returns the report."""
    if method not in METHODS:
        raise FashionlabError(f"unknown ensemble method '{method}'; choose one of {', '.join(METHODS)}")
    from .tasks import all_tasks, get_task

    if not get_task(task).probability_csv:
        known = ", ".join(t.name for t in all_tasks() if t.probability_csv)
        raise FashionlabError(f"ensemble: task '{task}' has no probability CSVs; tasks: {known}")
    multilabel = get_task(task).multilabel
    preds, out = [Path(p) for p in preds], Path(out)
    if method in ("top_n", "stack") and truth is None:
        raise FashionlabError(f"ensemble method '{method}' needs --truth (labels of the OOF rows)")
    if method == "weighted" and weights is None:
        raise FashionlabError("ensemble method 'weighted' needs one weight per model (--weight, repeated)")
    if weights is not None and len(weights) != len(preds):
        raise FashionlabError(f"ensemble: {len(weights)} weights for {len(preds)} prediction files")
    if thresholds is not None and len(thresholds) != len(preds):
        raise FashionlabError(f"ensemble: {len(thresholds)} threshold files for {len(preds)} prediction files")
    if (test_preds is None) != (test_out is None) or (test_preds is not None and len(test_preds) != len(preds)):
        raise FashionlabError("ensemble: give one test file per prediction file, with test_out")
    images, columns, stack = read_probability_files(preds)
    names = [str(p) if [str(q) for q in preds].count(str(p)) == 1 else f"{p}#{i + 1}" for i, p in enumerate(preds)]
    y = read_truth(Path(truth), images, columns, multilabel) if truth is not None else None
    model_scores = [score(s, y, multilabel) for s in stack] if y is not None else None
    corr = correlation(stack)
    kept, pruned = prune(corr, model_scores, corr_threshold)
    for p in pruned:
        log.info("pruned %s: r=%.3f with %s", names[p["model"]], p["r"], names[p["correlated_with"]])
    test = None
    if test_preds is not None:
        t_images, t_columns, test = read_probability_files([Path(p) for p in test_preds])
        test = test[:, :, [t_columns.index(c) for c in columns]] if set(t_columns) == set(columns) else None
        if test is None:
            raise FashionlabError(f"{test_preds[0]}: test columns differ from {preds[0]}")
    w = np.asarray(weights, dtype=np.float64)[kept] if weights is not None else None
    thr = np.stack([read_thresholds(p, columns) for p in thresholds])[kept] if thresholds is not None else None
    chosen = select_top_n(stack[kept], y, multilabel, top_n) if y is not None else None

    def run(how: str, part: np.ndarray, test_part: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        both = [part] + ([test_part] if test_part is not None else [])
        if how == "mean":
            res = [combine_mean(s) for s in both]
        elif how == "weighted":
            res = [combine_mean(s, w) for s in both]
        elif how == "vote":
            res = [combine_vote(s, multilabel, thr) for s in both]
        elif how == "top_n":
            res = [combine_top_n(s, chosen) for s in both]
        else:
            return stack_predict(part, y, test_part, multilabel, seed=seed)
        return res[0], (res[1] if len(res) > 1 else None)

    combined, combined_test = run(method, stack[kept], test[kept] if test is not None else None)
    write_probabilities(out, images, columns, combined)
    if combined_test is not None:
        write_probabilities(Path(test_out), t_images, columns, combined_test)
    corr_csv = out.with_name(f"{out.stem}_correlation.csv")
    with atomic_open(corr_csv, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["model", *names])
        writer.writerows([[name, *(f"{v:.6f}" for v in row)] for name, row in zip(names, corr)])
    corr_json = {a: {b: float(corr[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}
    write_json(out.with_name(f"{out.stem}_correlation.json"), corr_json)
    report: dict[str, Any] = {
        "task": task, "method": method, "metric": "f2" if multilabel else "accuracy", "models": names,
        "kept": [names[i] for i in kept], "corr_threshold": corr_threshold,
        "pruned": [{**p, "model": names[p["model"]], "correlated_with": names[p["correlated_with"]]} for p in pruned],
        "correlation": corr_json, "out": str(out), "test_out": str(test_out) if test_out is not None else None}
    if w is not None:
        report["weights"] = {names[i]: float(v) for i, v in zip(kept, w / w.sum())}
    if chosen is not None and method == "top_n":
        report["top_n"] = {c: [names[kept[i]] for i in np.flatnonzero(chosen[:, j])] for j, c in enumerate(columns)}
    if y is not None:
        report["model_scores"] = dict(zip(names, model_scores))
        cheap = ["mean", "vote", "top_n"] + (["weighted"] if w is not None else [])
        report["scores"] = {how: score(run(how, stack[kept], None)[0], y, multilabel)
                            for how in METHODS if how in cheap and how != method}
        report["scores"][method] = score(combined, y, multilabel)
    write_json(out.with_name(f"{out.stem}_report.json"), report)
    return report
