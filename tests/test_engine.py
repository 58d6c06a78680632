"""End-to-end engine tests on tiny generated data with timm's tiny test model."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from fashionlab import api
from fashionlab.engine.checkpoint import load_weights
from fashionlab.errors import FashionlabError

from .conftest import TINY


def test_classify_train_predict_evaluate(class_folders: Path, tmp_path: Path) -> None:
    result = api.train("classify", data=str(class_folders), out=str(tmp_path / "run"), epochs=1, **TINY)
    best = result.run / "weights" / "best.pt"
    assert best.is_file()
    payload = torch.load(best, map_location="cpu", weights_only=True)  # safe format
    assert payload["meta"]["classes"] == [["blue", "green", "red"]]
    metrics = json.loads((result.run / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["accuracy"] == pytest.approx(metrics["best"]["value"])  # final eval reproduces the best score
    for name in ("config.yaml", "history.csv", "data.json", "predictions/val.csv"):
        assert (result.run / name).is_file(), name
    out = api.predict("classify", best, class_folders, tmp_path / "pred.csv")
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["image", "label", "score"]
    assert len(frame) == 30 and frame["image"].iloc[0].count("/") == 1  # path as found under DIR
    assert set(frame["label"]) <= {"red", "green", "blue"}


def test_fine_tuned_weights_predict_at_the_test_size(class_folders: Path, tmp_path: Path) -> None:
    opts = {**TINY, "imgsz": 64, "head_epochs": 0, "epochs": 1}
    result = api.train("classify", data=str(class_folders), out=str(tmp_path / "auto"), **opts)
    loaded = load_weights(result.best)
    assert (loaded.imgsz, loaded.info["train_imgsz"]) == (80, 64)  # 64 / 0.862 = 74 -> 80
    assert result.metrics["accuracy"] == pytest.approx(loaded.info["value"])  # validated at 80 px during training
    result = api.train("classify", data=str(class_folders), out=str(tmp_path / "fixed"), test_imgsz=64, **opts)
    assert load_weights(result.best).imgsz == 64


def test_resolved_config_saved_and_validated(class_folders: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("lr: 0.01\nschedule: cosine\n")
    result = api.train("classify", cfg, data=str(class_folders), out=str(tmp_path / "run"), epochs=0, **TINY)
    saved = (result.run / "config.yaml").read_text()
    assert "schedule: cosine" in saved and "lr: 0.01" in saved
    cfg.write_text("lrr: 0.01\n")
    with pytest.raises(FashionlabError, match="lrr: unknown option"):
        api.train("classify", cfg, data=str(class_folders), out=str(tmp_path / "run2"))
    with pytest.raises(FashionlabError, match="schedule"):
        api.train("classify", data=str(class_folders), schedule="linear")


def test_time_budget_plans_and_leaves_best(class_folders: Path, tmp_path: Path) -> None:
    result = api.train("classify", data=str(class_folders), out=str(tmp_path / "run"), time_budget=30, **TINY)
    plan = json.loads((result.run / "plan.json").read_text())
    assert plan["epochs"] >= 1 and plan["train_s_per_image"] > 0
    assert result.metrics["train_seconds"] < 30 + 15
    load_weights(result.best)


def test_attributes_end_to_end(attributes_release: Path, tmp_path: Path) -> None:
    result = api.train("attributes", data=str(attributes_release), out=str(tmp_path / "run"), epochs=1, **TINY)
    loaded = load_weights(result.best)
    assert loaded.meta.tasks == ["bright_labels", "colour_labels"]
    assert loaded.meta.head_sizes == [2, 3]
    label = attributes_release / "Annotations" / "label.csv"
    sub = api.predict("attributes", result.best, label, tmp_path / "sub.csv", tta="10crop")
    lines = sub.read_text().splitlines()
    assert len(lines) == 30
    path, task, probs = lines[0].split(",")
    values = probs.split(";")
    assert len(values) == (3 if task == "colour_labels" else 2)
    assert all(len(v.split(".")[1]) == 8 for v in values)
    assert sum(map(float, values)) == pytest.approx(1.0, abs=1e-6)
    scores = api.evaluate("attributes", sub, label)
    assert set(scores) >= {"map", "accuracy", "per_task"}


def test_unknown_model_and_bad_weights(class_folders: Path, tmp_path: Path) -> None:
    with pytest.raises(FashionlabError, match="unknown model 'resnet5'"):
        api.train("classify", data=str(class_folders), out=str(tmp_path / "r"), **{**TINY, "model": "resnet5"})
    bogus = tmp_path / "w.pt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(FashionlabError, match="cannot read weights"):
        api.train("classify", data=str(class_folders), out=str(tmp_path / "r"), **{**TINY, "pretrained": str(bogus)})
    with pytest.raises(FashionlabError, match="not a fashionlab weights file"):
        api.predict("classify", bogus, class_folders, tmp_path / "p.csv")


def test_second_transfer_new_classes_and_checkpoint_vote(class_folders: Path, attributes_release: Path,
                                                         tmp_path: Path) -> None:
    """Fine-tune the backbone of an earlier run on other classes (new head), then vote over checkpoints."""
    first = api.train("attributes", data=str(attributes_release), out=str(tmp_path / "a"), epochs=1, **TINY)
    tiny = {**TINY, "pretrained": str(first.best)}
    second = api.train("classify", data=str(class_folders), out=str(tmp_path / "b"), epochs=2, save_top_k=2,
                       ema_decay=0.9, **tiny)
    old = torch.load(first.best, weights_only=True)["state_dict"]
    assert (tmp_path / "b" / "config.yaml").read_text().count(str(first.best)) == 1
    epochs = sorted((second.run / "weights").glob("epoch*.pt"))
    assert len(epochs) == 2
    new_head = torch.load(second.best, weights_only=True)["state_dict"]["head.heads.0.weight"]
    assert new_head.shape[0] == 3 and "head.heads.1.weight" in old  # a new head for the new classes
    for how in ("mean", "vote", "confidence"):
        out = api.predict("classify", [second.best, *epochs], class_folders, tmp_path / f"{how}.csv", combine=how)
        frame = pd.read_csv(out)
        assert len(frame) == 30 and frame["score"].between(0, 1.0001).all()
    with pytest.raises(FashionlabError, match="holds a 'test_efficientnet' backbone, not 'test_resnet'"):
        api.train("classify", data=str(class_folders), out=str(tmp_path / "c"), **{**tiny, "model": "test_resnet"})


def test_cost_matrix_mixup_focal_se_head(class_folders: Path, tmp_path: Path) -> None:
    cost = tmp_path / "cost.csv"
    cost.write_text(",red,green,blue\nred,0,1,0.1\ngreen,1,0,1\nblue,0.1,1,0\n")  # rows reordered by name
    result = api.train("classify", data=str(class_folders), out=str(tmp_path / "r"), epochs=1, cost_matrix=str(cost),
                       mixup=0.4, cutmix=1.0, loss="focal", head="se", **TINY)
    assert 0 <= result.metrics["expected_cost"] <= 1
    truth = tmp_path / "truth.csv"
    truth.write_text("image,label\n" + "".join(f"{c}/{c}_{i}.jpg,{c}\n" for c in ("red", "green", "blue")
                                               for i in range(10)))
    pred = api.predict("classify", result.best, class_folders, tmp_path / "p.csv")
    scores = api.evaluate("classify", pred, truth, cost_path=cost)
    frame = pd.read_csv(pred)
    wrong = frame[frame["label"] != frame["image"].str.split("/").str[0]]
    severity = {("red", "green"): 1, ("red", "blue"): 0.1, ("green", "red"): 1, ("green", "blue"): 1,
                ("blue", "red"): 0.1, ("blue", "green"): 1}
    expected = sum(severity[(i.split("/")[0], p)] for i, p in zip(wrong["image"], wrong["label"])) / 30
    assert scores["expected_cost"] == pytest.approx(expected)
    assert scores["accuracy"] == pytest.approx(1 - len(wrong) / 30)
    bad = [["0", "1"], ["1", "0"]]
    with pytest.raises(FashionlabError, match="expected 3×3"):
        api.train("classify", data=str(class_folders), out=str(tmp_path / "x"), cost_matrix=bad, **TINY)
    with pytest.raises(FashionlabError, match="must be finite and >= 0"):
        api.train("classify", data=str(class_folders), out=str(tmp_path / "x"),
                  cost_matrix=[[0, -1, 0], [1, 0, 1], [1, 1, 0]], **TINY)
    cost.write_text(",red,green,cyan\nred,0,1,1\ngreen,1,0,1\ncyan,1,1,0\n")
    with pytest.raises(FashionlabError, match=r"missing \['blue'\], unknown \['cyan'\]"):
        api.train("classify", data=str(class_folders), out=str(tmp_path / "x"), cost_matrix=str(cost), **TINY)


def test_kfold_writes_oof_for_every_image_and_test_average(class_folders: Path, tmp_path: Path) -> None:
    run = tmp_path / "kf"
    result = api.train("classify", data=str(class_folders), out=str(run), folds=3, epochs=0, test=str(class_folders),
                       **TINY)
    oof = pd.read_csv(run / "oof.csv")
    assert list(oof.columns) == ["image", "blue", "green", "red"]
    assert sorted(oof["image"]) == sorted(f"{c}/{c}_{i}.jpg" for c in ("red", "green", "blue") for i in range(10))
    truth = pd.read_csv(run / "oof_truth.csv")
    accuracy = (oof.set_index("image")[["blue", "green", "red"]].idxmax(1) == truth.set_index("image")["label"]).mean()
    assert result.metrics["accuracy"] == pytest.approx(accuracy)
    assert len(result.metrics["per_fold"]) == 3
    assert len(pd.read_csv(run / "test.csv")) == 30
    mtime = (run / "fold0" / "weights" / "best.pt").stat().st_mtime
    with pytest.raises(FashionlabError, match="holds a finished run; continue it with --resume"):
        api.train("classify", data=str(class_folders), out=str(run), folds=3, epochs=0, **TINY)
    api.train("classify", resume=run)  # finished folds are reused
    assert (run / "fold0" / "weights" / "best.pt").stat().st_mtime == mtime


def test_attributes_per_task_models_route_rows(attributes_release: Path, tmp_path: Path) -> None:
    run = tmp_path / "per_task"
    results = api.train("attributes", data=str(attributes_release), out=str(run), epochs=0, multitask=False, **TINY)
    assert sorted(r.run.name for r in results) == ["bright_labels", "colour_labels"]
    assert load_weights(run / "colour_labels" / "weights" / "best.pt").meta.tasks == ["colour_labels"]
    label = attributes_release / "Annotations" / "label.csv"
    sub = api.predict("attributes", run, label, tmp_path / "sub.csv", tta="flip")
    rows = [line.split(",") for line in sub.read_text().splitlines()]
    assert len(rows) == 30
    assert {len(r[2].split(";")) for r in rows if r[1] == "colour_labels"} == {3}
    assert {len(r[2].split(";")) for r in rows if r[1] == "bright_labels"} == {2}
