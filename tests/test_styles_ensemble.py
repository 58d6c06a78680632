"""Ensembles of probability CSVs: hand-computed mean/weighted/vote, pruning, top-N, stacking."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fashionlab.ensemble import ensemble_files, write_probabilities
from fashionlab.errors import FashionlabError

IMAGES, LABELS = ["a.jpg", "b.jpg"], ["x", "y"]
M1 = np.array([[0.2, 0.8], [0.6, 0.4]])
M2 = np.array([[0.4, 0.6], [0.2, 0.2]])
M3 = np.array([[0.6, 0.1], [0.7, 0.9]])


@pytest.fixture()
def three(tmp_path: Path) -> list[Path]:
    return [write_probabilities(tmp_path / f"m{i}.csv", IMAGES, LABELS, m) for i, m in enumerate((M1, M2, M3))]


def read(path: Path) -> np.ndarray:
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["image", *LABELS]
    return frame[LABELS].to_numpy()


def test_mean_weighted_vote_by_hand(three: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "e.csv"
    ensemble_files(three, out, "mean", corr_threshold=1.0)
    np.testing.assert_allclose(read(out), [[0.4, 0.5], [0.5, 0.5]], atol=1e-6)
    ensemble_files(three, out, "weighted", weights=[1, 0, 3], corr_threshold=1.0)
    np.testing.assert_allclose(read(out), [[0.5, 0.275], [0.675, 0.775]], atol=1e-6)
    # thresholded at 0.5: m1 [[0,1],[1,0]], m2 [[0,1],[0,0]], m3 [[1,0],[1,1]]
    ensemble_files(three, out, "vote", corr_threshold=1.0)
    np.testing.assert_allclose(read(out), [[1 / 3, 2 / 3], [2 / 3, 1 / 3]], atol=1e-6)
    thr = tmp_path / "thr.json"
    thr.write_text(json.dumps({"x": 0.1}))  # with x at 0.1 every model votes x on both rows
    ensemble_files(three, out, "vote", corr_threshold=1.0, thresholds=[thr, thr, thr])
    assert read(out)[:, 0] == pytest.approx([1.0, 1.0], abs=1e-6)


def test_single_label_vote(tmp_path: Path) -> None:
    classes = ["cat", "dog", "owl"]
    models = [np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]]), np.array([[0.5, 0.4, 0.1], [0.1, 0.6, 0.3]]),
              np.array([[0.2, 0.7, 0.1], [0.2, 0.1, 0.7]])]
    paths = [write_probabilities(tmp_path / f"c{i}.csv", IMAGES, classes, m) for i, m in enumerate(models)]
    truth = tmp_path / "truth.csv"
    truth.write_text("image,label\na.jpg,cat\nb.jpg,owl\n")
    report = ensemble_files(paths, tmp_path / "v.csv", "vote", truth=truth, task="classify", corr_threshold=1.0)
    probs = pd.read_csv(tmp_path / "v.csv")[classes].to_numpy()
    assert probs.argmax(1).tolist() == [0, 2] and probs[0, 0] == pytest.approx(2 / 3, abs=1e-5)
    assert report["metric"] == "accuracy" and report["scores"]["vote"] == 1.0


def test_correlation_pruning_drops_the_duplicate(three: list[Path], tmp_path: Path) -> None:
    copy = write_probabilities(tmp_path / "copy.csv", IMAGES[::-1], LABELS, M1[::-1])  # same model, rows shuffled
    report = ensemble_files([three[0], copy, three[2]], tmp_path / "e.csv", "mean", corr_threshold=0.9)
    assert report["kept"] == [str(three[0]), str(three[2])]
    assert report["pruned"][0]["model"] == str(copy) and report["pruned"][0]["r"] == pytest.approx(1.0)
    np.testing.assert_allclose(read(tmp_path / "e.csv"), (M1 + M3) / 2, atol=1e-6)
    corr = pd.read_csv(tmp_path / "e_correlation.csv", index_col=0)
    assert corr.shape == (3, 3) and corr.iloc[0, 1] == pytest.approx(1.0)
    assert json.loads((tmp_path / "e_report.json").read_text())["kept"] == report["kept"]


def test_top_n_takes_each_labels_best_model(tmp_path: Path) -> None:
    truth_m = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    good_x = np.array([[0.9, 0.9], [0.1, 0.1], [0.9, 0.1], [0.1, 0.9]])  # right on x, wrong on y
    good_y = np.array([[0.1, 0.1], [0.9, 0.9], [0.1, 0.9], [0.9, 0.1]])  # right on y, wrong on x
    images = [f"{i}.jpg" for i in range(4)]
    paths = [write_probabilities(tmp_path / f"{n}.csv", images, LABELS, m) for n, m in (("gx", good_x), ("gy", good_y))]
    truth = write_probabilities(tmp_path / "truth.csv", images, LABELS, truth_m.astype(float))
    report = ensemble_files(paths, tmp_path / "e.csv", "top_n", truth=truth, top_n=1, corr_threshold=1.0)
    got = pd.read_csv(tmp_path / "e.csv")[LABELS].to_numpy()
    assert got[:, 0] == pytest.approx(good_x[:, 0]) and got[:, 1] == pytest.approx(good_y[:, 1])
    assert report["top_n"] == {"x": [str(paths[0])], "y": [str(paths[1])]}
    assert report["scores"]["top_n"] == pytest.approx(0.75)  # rows 0-2 perfect; row 3 has no label: F2 0


def test_stacking_learns_which_model_to_trust_per_label(tmp_path: Path) -> None:
    """Model A knows label x and guesses y; model B the reverse. Averaging blurs both labels; stacking
    (an XGBoost per label over all models' probabilities) learns to read x from A and y from B."""
    pytest.importorskip("xgboost")
    rng = np.random.default_rng(0)
    n = 200
    images = [f"{i}.jpg" for i in range(n)]
    truth_m = (rng.random((n, 2)) < 0.5).astype(float)
    empty = truth_m.sum(1) == 0
    truth_m[empty, rng.integers(0, 2, empty.sum())] = 1.0  # sample F2 of a row without positives is 0 anyway
    truth = write_probabilities(tmp_path / "truth.csv", images, LABELS, truth_m)
    knows = np.clip(truth_m * 0.7 + rng.random((n, 2)) * 0.3, 0, 1)  # > 0.5 exactly for the positives
    guesses = rng.random((n, 2))
    a = np.stack([knows[:, 0], guesses[:, 1]], 1)
    b = np.stack([guesses[:, 0], knows[:, 1]], 1)
    oof = [write_probabilities(tmp_path / f"oof{i}.csv", images, LABELS, m) for i, m in enumerate((a, b))]
    test = [write_probabilities(tmp_path / f"test{i}.csv", images[:10], LABELS, m[:10]) for i, m in enumerate((a, b))]
    report = ensemble_files(oof, tmp_path / "s.csv", "stack", truth=truth, test_preds=test,
                            test_out=tmp_path / "s_test.csv", corr_threshold=1.0)
    assert len(read(tmp_path / "s.csv")) == n and len(read(tmp_path / "s_test.csv")) == 10
    scores = report["scores"]
    assert scores["stack"] > 0.95 and scores["stack"] > scores["mean"] + 0.05, scores
    stacked = read(tmp_path / "s.csv")
    assert ((stacked >= 0.5) == (truth_m > 0.5)).mean() > 0.95  # out-of-fold predictions, not a fit to the rows


def test_ensemble_errors(three: list[Path], tmp_path: Path) -> None:
    with pytest.raises(FashionlabError, match="needs --truth"):
        ensemble_files(three, tmp_path / "e.csv", "stack")
    with pytest.raises(FashionlabError, match="2 weights for 3"):
        ensemble_files(three, tmp_path / "e.csv", "weighted", weights=[1, 2])
    other = write_probabilities(tmp_path / "o.csv", ["a.jpg", "c.jpg"], LABELS, M1)
    with pytest.raises(FashionlabError, match="images differ"):
        ensemble_files([three[0], other], tmp_path / "e.csv", "mean")
    with pytest.raises(FashionlabError, match="unknown ensemble method"):
        ensemble_files(three, tmp_path / "e.csv", "median")
