"""Per-label threshold search for sample F2: known optimum, brute force, L-BFGS safety, file I/O errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fashionlab.errors import FashionlabError
from fashionlab.tasks.styles.metric import evaluate_styles_files, read_thresholds, sample_f2
from fashionlab.tasks.styles.thresholds import (
    _surrogate,
    apply_thresholds,
    lbfgs_thresholds,
    search_thresholds,
    tune,
    tune_thresholds_files,
)


def random_case(seed: int, n: int = 80, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, k)) < np.linspace(0.5, 0.1, k)).astype(int)
    probs = np.clip(0.25 * truth + rng.random((n, k)) * 0.7, 0, 1)
    return probs, truth


def test_known_best_threshold_is_found() -> None:
    # label a: positives score 0.30-0.40, negatives 0.00-0.20 -> any threshold in (0.2, 0.3] is perfect
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 2), dtype=int)
    truth[:20, 0] = 1
    truth[:, 1] = 1  # label b is always true and always predicted
    probs = np.zeros((40, 2))
    probs[:20, 0] = rng.uniform(0.30, 0.40, 20)
    probs[20:, 0] = rng.uniform(0.00, 0.20, 20)
    probs[:, 1] = 0.9
    report = tune(probs, truth, ["a", "b"], "greedy")
    assert report["f2_before"] < 1.0
    assert report["f2_after"] == pytest.approx(1.0)
    assert probs[20:, 0].max() < report["thresholds"]["a"] <= probs[:20, 0].min()


def test_greedy_equals_brute_force_for_one_label() -> None:
    rng = np.random.default_rng(3)
    truth = (rng.random((50, 1)) < 0.3).astype(int)
    probs = np.clip(0.2 * truth + rng.random((50, 1)) * 0.8, 0, 1)
    candidates = np.unique(np.concatenate([probs[:, 0], np.linspace(0, 1, 1001)]))
    brute = max(sample_f2(truth, probs >= t) for t in candidates)
    found = search_thresholds(probs, truth, ["only"], "greedy")
    assert sample_f2(truth, apply_thresholds(probs, found, ["only"])) == pytest.approx(brute)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_never_worse_than_half(seed: int) -> None:
    probs, truth = random_case(seed)
    labels = [f"l{j}" for j in range(truth.shape[1])]
    at_half = sample_f2(truth, probs >= 0.5)
    greedy = sample_f2(truth, apply_thresholds(probs, search_thresholds(probs, truth, labels, "greedy"), labels))
    lbfgs = sample_f2(truth, apply_thresholds(probs, search_thresholds(probs, truth, labels, "lbfgs"), labels))
    assert greedy > at_half
    assert lbfgs >= greedy - 1e-12
    alone = lbfgs_thresholds(probs, truth.astype(bool))  # started from 0.5
    assert sample_f2(truth, probs >= alone[None, :]) >= at_half
    assert np.all((alone >= 0.01) & (alone <= 0.99)) or np.allclose(alone, 0.5)
    assert search_thresholds(probs, truth, labels, "none") == dict.fromkeys(labels, 0.5)


def test_surrogate_gradient_matches_finite_differences() -> None:
    from scipy.optimize import check_grad

    probs, truth = random_case(4, n=30, k=3)
    t = truth.astype(bool)
    x = np.array([0.3, 0.5, 0.6])
    err = check_grad(lambda v: _surrogate(v, probs, t, 0.05)[0], lambda v: _surrogate(v, probs, t, 0.05)[1], x)
    assert err < 1e-5


def write_matrix(path: Path, images: list[str], labels: list[str], rows: np.ndarray, fmt: str = "{:.6f}") -> Path:
    lines = [",".join(["image", *labels])]
    lines += [",".join([name, *(fmt.format(v) for v in row)]) for name, row in zip(images, rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_tune_thresholds_files_round_trip(tmp_path: Path) -> None:
    probs, truth = random_case(5, n=40, k=3)
    labels, images = ["x", "y", "z"], [f"{i}.jpg" for i in range(40)]
    pred = write_matrix(tmp_path / "probs.csv", images[::-1], labels, probs[::-1])  # other row order
    true = write_matrix(tmp_path / "truth.csv", images, labels, truth, "{:d}")
    report = tune_thresholds_files(pred, true, tmp_path / "t.json")
    assert report["f2_after"] > report["f2_before"]
    saved = json.loads((tmp_path / "t.json").read_text())
    assert set(saved) == set(labels)
    assert read_thresholds(tmp_path / "t.json", labels) == pytest.approx([saved[n] for n in labels])
    scored = evaluate_styles_files(pred, true, tmp_path / "t.json")
    assert scored["f2"] == pytest.approx(report["f2_after"])


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FashionlabError, match="unknown label"):
        apply_thresholds(np.full((2, 2), 0.6), {"a": 0.3, "nope": 0.2}, ["a", "b"])
    with pytest.raises(FashionlabError, match="expected a number"):
        apply_thresholds(np.full((2, 2), 0.6), {"a": 1.5}, ["a", "b"])
    with pytest.raises(FashionlabError, match="unknown threshold search"):
        search_thresholds(np.full((2, 1), 0.6), np.ones((2, 1)), ["a"], "newton")
    pred = write_matrix(tmp_path / "p.csv", ["1.jpg"], ["a", "c"], np.array([[0.2, 0.3]]))
    true = write_matrix(tmp_path / "t.csv", ["1.jpg"], ["a", "b"], np.array([[1, 0]]), "{:d}")
    with pytest.raises(FashionlabError, match="p.csv line 1: label columns differ"):
        tune_thresholds_files(pred, true, tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()
