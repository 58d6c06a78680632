"""FashionAI attribute metric: hand-computed AP/mAP, tie handling, readers' error paths."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fashionlab.errors import FashionlabError
from fashionlab.tasks.attributes.metric import (
    attributes_map,
    evaluate_attributes_files,
    read_label_csv,
    read_submission_csv,
)

# task A (3 values) and task B (2 values)
ROWS = [
    ("A", "nyn", [0.1, 0.7, 0.2]),     # argmax 1 -> 'y' hit, score 0.7
    ("A", "ynn", [0.2, 0.5, 0.3]),     # argmax 1 -> 'n' miss, score 0.5
    ("A", "nny", [0.05, 0.05, 0.9]),   # argmax 2 -> 'y' hit, score 0.9
    ("A", "ymn", [0.1, 0.8, 0.1]),     # argmax 1 -> 'm' not counted
    ("B", "yn", [0.6, 0.4]),           # hit, score 0.6
    ("B", "ny", [0.8, 0.2]),           # miss, score 0.8
]


def test_hand_computed_map() -> None:
    out = attributes_map(ROWS)
    # A sorted: 0.9 hit, 0.7 hit, 0.5 miss -> running precision 1, 1, 2/3 -> AP = (1 + 1 + 2/3) / 3 = 8/9
    assert out["per_task"]["A"] == pytest.approx(8 / 9)
    # B sorted: 0.8 miss, 0.6 hit -> running precision 0, 1/2 -> AP = 0.25
    assert out["per_task"]["B"] == pytest.approx(0.25)
    # map = (8/9 + 1/4) / 2 = 41/72; accuracy = 3 hits / 5 counted rows
    assert out["map"] == pytest.approx(41 / 72)
    assert out["accuracy"] == pytest.approx(0.6)
    assert set(out) == {"map", "accuracy", "per_task"}


def test_ties_keep_file_order_and_argmax_takes_first() -> None:
    # equal max probability 0.5: stable sort keeps the miss first -> precision 0, 1/2 -> AP 0.25
    miss_first = [("T", "ny", [0.5, 0.4]), ("T", "yn", [0.5, 0.3])]
    assert attributes_map(miss_first)["per_task"]["T"] == pytest.approx(0.25)
    # reversed file order: hit first -> precision 1, 1/2 -> AP 0.75
    assert attributes_map(miss_first[::-1])["per_task"]["T"] == pytest.approx(0.75)
    # argmax tie [0.5, 0.5] picks index 0 -> 'n' -> a miss, not a hit
    out = attributes_map([("T", "ny", [0.5, 0.5])])
    assert out["per_task"]["T"] == 0.0 and out["accuracy"] == 0.0


def test_all_maybe_task_scores_zero_and_counts_in_map() -> None:
    rows = [("M", "my", [0.9, 0.1]), ("Y", "yn", [0.9, 0.1])]
    out = attributes_map(rows)
    assert out["per_task"] == {"M": 0.0, "Y": 1.0}
    assert out["map"] == pytest.approx(0.5)  # (0 + 1) / 2
    assert out["accuracy"] == pytest.approx(1.0)  # 1 hit / 1 counted row
    assert attributes_map([("M", "my", [0.9, 0.1])])["accuracy"] == 0.0


def test_map_input_errors() -> None:
    with pytest.raises(FashionlabError, match="no rows"):
        attributes_map([])
    with pytest.raises(FashionlabError, match="row 1 .*2 probabilities.*3 letters"):
        attributes_map([("A", "ynn", [0.5, 0.5])])


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_label_csv(tmp_path: Path) -> None:
    csv = write(tmp_path / "label.csv", "Images/a/1.jpg,a,nyn\n\nImages/b/1.jpg,b,ym\n")
    frame = read_label_csv(csv)
    assert list(frame.columns) == ["path", "task", "label"]
    assert frame.values.tolist() == [["Images/a/1.jpg", "a", "nyn"], ["Images/b/1.jpg", "b", "ym"]]
    assert len(read_label_csv(csv, known_tasks={"a": 3, "b": 2})) == 2


@pytest.mark.parametrize("text, known, match", [
    ("", None, "label.csv: empty file"),
    ("\n\n", None, "label.csv: empty file"),
    ("p,a\n", None, r"label.csv line 1: expected 3 columns.*found 2"),
    ("p,a,yn\np,a,yn,x\n", None, r"label.csv line 2: expected 3 columns.*found 4"),
    ("p,a,\n", None, "label.csv line 1: empty label"),
    (",a,yn\n", None, "label.csv line 1: empty path"),
    ("p,,yn\n", None, "label.csv line 1: empty task"),
    ("p,a,nnyx\n", None, "label.csv line 1: label 'nnyx' has letter 'x'; expected y/n/m"),
    ("p,a,nY\n", None, "label 'nY' has letter 'Y'"),
    ("p,a,ny\nq,a,nnm\n", None, "label.csv line 2: label 'nnm' has no 'y'"),
    ("p,a,yn\nq,a,nyn\n", None, r"label.csv line 2: label 'nyn' has 3 letters; task 'a' has 2 \(line 1\)"),
    ("p,a,yn\nq,a,ny\np,a,ny\n", None, r"label.csv line 3: duplicate row for path 'p' task 'a' \(first on line 1\)"),
    ("p,a,yn\nq,z,yn\n", {"a": 2}, "label.csv line 2: unknown task 'z'"),
    ("p,a,yn\nq,a,yn\n", {"a": 3}, "label.csv line 1: label 'yn' has 2 letters; task 'a' has 3"),
])
def test_read_label_csv_errors(tmp_path: Path, text: str, known: dict | None, match: str) -> None:
    with pytest.raises(FashionlabError, match=match):
        read_label_csv(write(tmp_path / "label.csv", text), known_tasks=known)


def test_read_label_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FashionlabError, match="nope.csv: no such file"):
        read_label_csv(tmp_path / "nope.csv")


def test_read_submission_csv(tmp_path: Path) -> None:
    frame = read_submission_csv(write(tmp_path / "pred.csv", "p,a,0.25;0.75\nq,b,1;0;0\n"))
    assert list(frame.columns) == ["path", "task", "probs"]
    assert np.allclose(frame["probs"][0], [0.25, 0.75]) and len(frame["probs"][1]) == 3


@pytest.mark.parametrize("text, match", [
    ("", "pred.csv: empty file"),
    ("p,a\n", r"pred.csv line 1: expected 3 columns.*found 2"),
    ("p,a,0.5;0.5\nq,a,0.5;x\n", "pred.csv line 2: probability 'x' is not a number"),
    ("p,a,0.5;nan\n", "pred.csv line 1: probability 'nan' is not a number"),
    ("p,a,\n", "pred.csv line 1: probability '' is not a number"),
    ("p,a,0.5;0.5\np,a,0.1;0.9\n", r"pred.csv line 2: duplicate row .*first on line 1"),
])
def test_read_submission_csv_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(FashionlabError, match=match):
        read_submission_csv(write(tmp_path / "pred.csv", text))


def _files(tmp_path: Path, pred_rows: list[str]) -> tuple[Path, Path]:
    truth = "\n".join(f"img/{i}.jpg,{task},{label}" for i, (task, label, _) in enumerate(ROWS)) + "\n"
    return write(tmp_path / "pred.csv", "\n".join(pred_rows) + "\n"), write(tmp_path / "label.csv", truth)


def test_evaluate_files_matches_in_memory_and_ignores_extra_rows(tmp_path: Path) -> None:
    pred_rows = [f"img/{i}.jpg,{task},{';'.join(map(str, p))}" for i, (task, _, p) in enumerate(ROWS)]
    pred_rows = ["extra/x.jpg,A,0.3;0.3;0.4"] + pred_rows[::-1]  # any order, plus a row not in the truth
    out = evaluate_attributes_files(*_files(tmp_path, pred_rows))
    assert out["map"] == pytest.approx(41 / 72) and out["accuracy"] == pytest.approx(0.6)


def test_evaluate_files_missing_and_wrong_width(tmp_path: Path) -> None:
    rows = [f"img/{i}.jpg,{task},{';'.join(map(str, p))}" for i, (task, _, p) in enumerate(ROWS)]
    with pytest.raises(FashionlabError, match=r"label.csv line 3: path 'img/2.jpg' task 'A' has no prediction"):
        evaluate_attributes_files(*_files(tmp_path, rows[:2] + rows[3:]))
    rows[4] = "img/4.jpg,B,0.2;0.3;0.5"
    want = r"pred.csv line 5: path 'img/4.jpg' has 3 probabilities; the label has 2"
    with pytest.raises(FashionlabError, match=want):
        evaluate_attributes_files(*_files(tmp_path, rows))
