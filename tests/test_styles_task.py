"""styles task: resampling counts, split warnings, input errors, tiny train -> predict -> evaluate."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashionlab import api
from fashionlab.errors import FashionlabError
from fashionlab.tasks.styles.config import StylesConfig
from fashionlab.tasks.styles.metric import evaluate_styles_files
from fashionlab.tasks.styles.task import StylesTask, resample_indices

from .conftest import TINY

# counts A=6, B=3, C=2, D=1: quantile 0.25 of the counts = 1.75 -> D rare; 0.75 -> 3.75 -> A frequent
MATRIX = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1],
                   [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=np.float32)


def test_resampling_counts_by_hand() -> None:
    idx, rare, frequent = resample_indices(MATRIX, 3.0, 1.0, 0.25, seed=0)
    assert rare == [3] and frequent == [0]
    assert sorted(idx.tolist()) == [0, 1, 2, 3, 4, 5, 5, 5, 6, 7, 8]
    assert MATRIX[idx].sum(0).tolist() == [8, 3, 2, 3]
    # keep ~none of the all-frequent rows (0, 1, 2: only A; 8: no label); row 3 has B, so it stays
    idx, _, _ = resample_indices(MATRIX, 3.0, 1e-9, 0.25, seed=0)
    assert sorted(idx.tolist()) == [3, 4, 5, 5, 5, 6, 7]
    assert MATRIX[idx].sum(0).tolist() == [5, 3, 2, 3]
    assert resample_indices(MATRIX, 1.0, 1.0, 0.25, seed=0)[0].tolist() == list(range(9))
    a, b = resample_indices(MATRIX, 2.5, 0.5, 0.25, seed=4)[0], resample_indices(MATRIX, 2.5, 0.5, 0.25, seed=4)[0]
    assert a.tolist() == b.tolist() and 2 <= a.tolist().count(5) <= 3


def make_set(root: Path, rows: list[str], header: str = "image,a,b,c", n_images: int = 12) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3)).astype(np.uint8)).save(root / "images" / f"{i}.jpg")
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return root / "labels.csv"


def rows_for(n: int) -> list[str]:
    return [f"{i}.jpg,{int(i % 2 == 0)},{int(i % 3 == 0)},{int(i == 5)}" for i in range(n)]


def test_load_train_split_counts_and_absent_label_warning(tmp_path: Path, caplog) -> None:
    csv = make_set(tmp_path, rows_for(12))
    task = StylesTask()
    cfg = StylesConfig(data=str(csv), val_fraction=0.25, upsample_rare=2.0)
    with caplog.at_level(logging.WARNING, logger="fashionlab"):
        train, val, meta = task.load_train(cfg)
    assert meta.tasks == ["styles"] and meta.classes == [["a", "b", "c"]]
    assert train.targets.dtype == np.float32 and set(np.unique(train.task_index)) == {0}
    assert task.label_counts["train_images_before"] + len(val) == 12
    assert task.label_counts["after"]["c"] >= task.label_counts["before"]["c"]
    assert not set(train.keys) & set(val.keys)  # no image in both splits
    assert "a fold with a label absent" in caplog.text  # label c has one image: one split lacks it
    again = StylesTask().load_train(cfg)
    assert again[1].keys == val.keys  # deterministic


def test_input_errors(tmp_path: Path) -> None:
    rows = rows_for(12)
    task = StylesTask()
    bad = make_set(tmp_path / "bad", rows[:2] + ["2.jpg,1,2,0"] + rows[3:])
    with pytest.raises(FashionlabError, match=r"labels.csv line 4 column 'b': value '2' is not 0 or 1"):
        task.load_train(StylesConfig(data=str(bad)))
    dup = make_set(tmp_path / "dup", rows + ["3.jpg,1,0,0"])
    with pytest.raises(FashionlabError, match="line 14: duplicate image '3.jpg'"):
        task.load_train(StylesConfig(data=str(dup)))
    missing = make_set(tmp_path / "missing", rows + ["99.jpg,1,0,0"])
    with pytest.raises(FashionlabError, match="line 14: image '99.jpg' not found"):
        task.load_train(StylesConfig(data=str(missing)))
    good = make_set(tmp_path / "good", rows)
    other = make_set(tmp_path / "other", rows_for(4), header="image,a,b,zz")
    with pytest.raises(FashionlabError, match="labels differ from the training labels"):
        task.load_train(StylesConfig(data=str(good), val_data=str(other)))


def test_tiny_train_predict_evaluate(tmp_path: Path) -> None:
    from fashionlab.data.synth.styles import synth_styles

    data = synth_styles(tmp_path / "st", n=24, size=32, seed=0)
    result = api.train("styles", data=str(data / "labels.csv"), out=str(tmp_path / "run"), epochs=1,
                       upsample_rare=2.0, **TINY)
    metrics = result.metrics
    assert metrics["metric"] == "f2" and 0 <= metrics["f2"] <= metrics["f2_tuned"] <= 1
    assert set(metrics["per_label_f2"]) == set(metrics["thresholds"])
    assert json.loads((result.run / "thresholds.json").read_text()) == metrics["thresholds"]
    counts = json.loads((result.run / "data.json").read_text())["label_counts"]
    assert counts["train_images_after"] >= counts["train_images_before"]
    header = (data / "labels.csv").read_text().splitlines()[0]
    out = api.predict("styles", result.best, data / "labels.csv", tmp_path / "probs.csv")
    assert out.read_text().splitlines()[0] == header
    scores = evaluate_styles_files(out, data / "labels.csv", result.run / "thresholds.json")
    assert 0 <= scores["f2"] <= 1 and len(scores["per_label_f2"]) == 13
    folder = api.predict("styles", result.best, data / "images", tmp_path / "folder.csv")
    frame = pd.read_csv(folder)
    assert len(frame) == 24 and frame["image"].str.endswith(".jpg").all()
    val = pd.read_csv(result.run / "predictions" / "val.csv")
    assert list(val.columns) == header.split(",") and val.iloc[:, 1:].to_numpy().max() <= 1
    for plot in ("thresholds.png", "per_label_f2.png"):
        assert (result.run / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
