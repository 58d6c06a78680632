"""Style F2: hand-computed values, equality with sklearn (zero_division=0), file readers' errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fashionlab.errors import FashionlabError
from fashionlab.tasks.styles.metric import (
    evaluate_styles_files,
    per_label_f2,
    read_label_matrix,
    sample_f2,
)

Y_TRUE = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]])
Y_PRED = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]])


def test_hand_computed_f2() -> None:
    # F2 = 5tp / (5tp + 4fn + fp)
    # row 0: tp=1 fn=1 fp=1 -> 5/10 = 0.5; row 1: tp=1 -> 1.0; row 2: nothing true or predicted -> 0
    assert sample_f2(Y_TRUE, Y_PRED) == pytest.approx(1.5 / 3)
    # col 0: tp=1 -> 1; col 1: tp=1 fp=1 -> 5/6; col 2: tp=0 fn=1 -> 0
    assert per_label_f2(Y_TRUE, Y_PRED) == pytest.approx([1.0, 5 / 6, 0.0])
    # recall weighs 4x precision: tp=1 fn=0 fp=3 -> 5/8, tp=1 fn=3 fp=0 -> 5/17
    assert sample_f2([[1, 0, 0, 0]], [[1, 1, 1, 1]]) == pytest.approx(5 / 8)
    assert sample_f2([[1, 1, 1, 1]], [[1, 0, 0, 0]]) == pytest.approx(5 / 17)


def test_shape_errors() -> None:
    with pytest.raises(FashionlabError, match="shape"):
        sample_f2(Y_TRUE, Y_PRED[:, :2])
    with pytest.raises(FashionlabError, match="2-D"):
        per_label_f2([1, 0], [1, 0])


def test_equals_sklearn_on_random_data_and_edges() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(20):
        n, k = int(rng.integers(1, 30)), int(rng.integers(2, 8))  # k=1 is "binary" to sklearn
        y = (rng.random((n, k)) < rng.random()).astype(int)
        yhat = (rng.random((n, k)) < rng.random()).astype(int)
        y[rng.random(n) < 0.2] = 0        # some all-zero truth rows
        yhat[rng.random(n) < 0.2] = 0     # some all-zero prediction rows
        y[:, rng.random(k) < 0.2] = 0     # some all-zero columns
        for a, b in ((y, yhat), (y, y), (np.zeros_like(y), np.zeros_like(y)), (y, np.zeros_like(y))):
            want = metrics.fbeta_score(a, b, beta=2, average="samples", zero_division=0)
            assert sample_f2(a, b) == pytest.approx(want, abs=1e-12), trial
            want_per = metrics.fbeta_score(a, b, beta=2, average=None, zero_division=0)
            assert per_label_f2(a, b) == pytest.approx(want_per, abs=1e-12), trial


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


TRUTH = "image,floral,striped,plain\na.jpg,1,0,1\nb.jpg,0,1,0\nc.jpg,0,0,0\n"
# rows shuffled and columns reordered; at 0.5 this predicts exactly Y_PRED
PROBS = "image,plain,floral,striped\nc.jpg,0.1,0.2,0.3\na.jpg,0.4,0.9,0.5\nb.jpg,0.0,0.1,0.7\n"


def test_read_label_matrix(tmp_path: Path) -> None:
    images, labels, matrix = read_label_matrix(write(tmp_path / "t.csv", TRUTH), binary=True)
    assert images == ["a.jpg", "b.jpg", "c.jpg"] and labels == ["floral", "striped", "plain"]
    assert matrix.tolist() == Y_TRUE.tolist()


def test_evaluate_files_aligns_rows_and_columns(tmp_path: Path) -> None:
    pred, truth = write(tmp_path / "p.csv", PROBS), write(tmp_path / "t.csv", TRUTH)
    out = evaluate_styles_files(pred, truth)
    assert out["f2"] == pytest.approx(0.5)
    assert out["per_label_f2"] == pytest.approx({"floral": 1.0, "striped": 5 / 6, "plain": 0.0})
    # thresholds: striped 0.8 drops a.jpg (0.5) and b.jpg (0.7); plain 0.4 turns on a.jpg (prob 0.4 >= 0.4)
    th = write(tmp_path / "th.json", json.dumps({"striped": 0.8, "plain": 0.4}))
    out = evaluate_styles_files(pred, truth, thresholds_path=th)
    # a: pred {floral, plain} = truth -> 1; b: tp=0 fn=1 -> 0; c: 0 -> f2 = 1/3
    assert out["f2"] == pytest.approx(1 / 3)
    assert out["per_label_f2"] == pytest.approx({"floral": 1.0, "striped": 0.0, "plain": 1.0})


@pytest.mark.parametrize("text, binary, match", [
    ("", True, "t.csv: empty file"),
    ("image,a\n", True, "t.csv: no data rows"),
    ("img,a\nx,1\n", True, "t.csv line 1: first column must be 'image', found 'img'"),
    ("image\nx\n", True, "t.csv line 1: no label columns"),
    ("image,a,a\nx,1,0\n", True, r"t.csv line 1: duplicate column 'a' \(columns 2 and 3\)"),
    ("image,a,b\nx,1,0\ny,0,1\nx,1,1\n", True, r"t.csv line 4: duplicate image 'x' \(first on line 2\)"),
    ("image,a,b\nx,1,0\ny,0,abc\n", True, "t.csv line 3 column 'b': value 'abc' is not a number"),
    ("image,a,b\nx,1,0\ny,0,nan\n", False, "t.csv line 3 column 'b': value 'nan' is not a number"),
    ("image,a,b\nx,1,0\ny,0.5,1\n", True, "t.csv line 3 column 'a': value '0.5' is not 0 or 1"),
    ("image,a,b\nx,1,0\ny,2,1\n", True, "t.csv line 3 column 'a': value '2' is not 0 or 1"),
    ("image,a,b\nx,1,0\ny,0.2,1.5\n", False, r"t.csv line 3 column 'b': value '1.5' is not a probability in \[0, 1\]"),
    ("image,a,b\nx,1,-0.1\n", False, "t.csv line 2 column 'b': value '-0.1' is not a probability"),
    ("image,a,b\nx,1,0\ny,1\n", True, "t.csv line 3 column 'b': empty or missing cell"),
    ("image,a,b\nx,1,0\ny,1,0,1\n", True, "t.csv line 3: 4 columns; the header has 3"),
    ("image,a,b\nx,1,0\n,1,0\n", True, "t.csv line 3: empty image name"),
])
def test_read_label_matrix_errors(tmp_path: Path, text: str, binary: bool, match: str) -> None:
    with pytest.raises(FashionlabError, match=match):
        read_label_matrix(write(tmp_path / "t.csv", text), binary=binary)


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    with pytest.raises(FashionlabError, match="t.csv line 4 column 'a': value '7' is not 0 or 1"):
        read_label_matrix(write(tmp_path / "t.csv", "image,a\nx,1\n\ny,7\n"), binary=True)


def test_evaluate_mismatches(tmp_path: Path) -> None:
    truth = write(tmp_path / "t.csv", TRUTH)
    pred = write(tmp_path / "p.csv", "image,floral,striped,dots\na.jpg,1,0,1\nb.jpg,0,1,0\nc.jpg,0,0,0\n")
    with pytest.raises(FashionlabError, match="label columns differ.*missing plain; extra dots"):
        evaluate_styles_files(pred, truth)
    pred = write(tmp_path / "p.csv", "image,floral,striped,plain\na.jpg,1,0,1\nd.jpg,0,1,0\n")
    want = "images differ.*no prediction for b.jpg, c.jpg; images not in the truth: d.jpg"
    with pytest.raises(FashionlabError, match=want):
        evaluate_styles_files(pred, truth)


@pytest.mark.parametrize("text, match", [
    ('{"dots": 0.3}', "th.json: unknown label.*dots"),
    ('{"floral": "high"}', r"th.json: threshold for 'floral' is 'high'; expected a number in \[0, 1\]"),
    ('{"floral": 1.5}', "threshold for 'floral' is 1.5"),
    ('[0.5]', "th.json: expected a JSON object"),
    ('{"floral": 0.5,\n', "th.json line 2: invalid JSON"),
])
def test_threshold_errors(tmp_path: Path, text: str, match: str) -> None:
    pred, truth = write(tmp_path / "p.csv", PROBS), write(tmp_path / "t.csv", TRUTH)
    with pytest.raises(FashionlabError, match=match):
        evaluate_styles_files(pred, truth, thresholds_path=write(tmp_path / "th.json", text))
    with pytest.raises(FashionlabError, match="nope.json: no such file"):
        evaluate_styles_files(pred, truth, thresholds_path=tmp_path / "nope.json")
