"""One engine for every task: each registered task runs synth -> train (tiny) -> predict -> evaluate ->
export -> serve, and the engine's guarantees hold for all of them (best.pt holds the weights that
scored, the split follows split_seed, runs are never overwritten, a failed start leaves nothing)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fashionlab import api
from fashionlab.errors import FashionlabError
from fashionlab.tasks import TASKS, get_task

from .conftest import COLOURS, draw

TINY = dict(model="test_efficientnet", pretrained="none", batch=8, workers=0)
SIZES = {"attributes": 32, "classify": 32, "styles": 32, "keypoints": 64, "retrieval": 64}


def task_data(task: str, root: Path) -> tuple[Path, Path]:
    """(training data, prediction source) of ``task``: its synthetic set, or class folders for classify."""
    if task == "classify":
        rng = np.random.default_rng(0)
        for name, colour in COLOURS.items():
            for i in range(8):
                draw(root / name / f"{name}_{i}.jpg", colour, rng)
        return root, root
    size = {"attributes": dict(n=30, size=48, tasks=["neck_design_labels"]), "styles": dict(n=30, size=48),
            "keypoints": dict(n=24, size=64),
            "retrieval": dict(n=8, size=64)}[task]
    data = api.synth(task, root, seed=1, **size)
    source = {"attributes": data / "Annotations" / "label.csv", "styles": data / "labels.csv",
              "keypoints": data / "train.csv", "retrieval": data / "items.csv"}[task]
    return source, source


def options(task: str) -> dict:
    extra = {"head_epochs": 0} if task in ("attributes", "classify", "styles") else {}  # best.pt from fine-tuning
    if task == "retrieval":
        extra = {"embed_dim": 8, "val_fraction": 0.25}
    return {**TINY, "imgsz": SIZES[task], **extra}


@pytest.fixture(scope="module", params=sorted(TASKS))
def trained(request, tmp_path_factory) -> tuple[str, Path, Path, object]:
    task = request.param
    root = tmp_path_factory.mktemp(task)
    data, source = task_data(task, root / "data")
    result = api.train(task, data=str(data), out=str(root / "run"), epochs=2, save_top_k=2, ema_decay=0.5,
                       **options(task))
    return task, source, root, result


def test_train_writes_the_same_run_folder_for_every_task(trained) -> None:
    task, _, _, result = trained
    run = result.run
    for name in ("config.yaml", "data.json", "state.json", "history.csv", "metrics.json", "weights/best.pt",
                 "weights/last.ckpt", "plots/curves.png"):
        assert (run / name).is_file(), f"{task}: {name}"
    metrics = json.loads((run / "metrics.json").read_text())
    info = get_task(task)
    assert metrics["metric"] == info.metric and metrics["lower_is_better"] is (not info.higher_is_better)
    history = pd.read_csv(run / "history.csv")
    assert history[history["stage"] == "finetune"]["epoch"].tolist() == [1, 2]
    assert len(list((run / "weights").glob("epoch*.pt"))) == 2  # top-k works for every task


def test_best_pt_holds_the_weights_that_scored(trained) -> None:
    """With EMA on, validation scores the averaged weights; best.pt must be those weights (a callback that
    saved after the averaging callback swapped the raw weights back would store the raw net)."""
    task, _, _, result = trained
    hooks = get_task(task).hooks(api.config(task, **yaml_config(result.run)))
    hooks.load_data()
    net = hooks.build_model()
    payload = torch.load(result.best, map_location="cpu", weights_only=True)
    state = {k: v for k, v in payload["state_dict"].items()}
    missing = net.load_state_dict(state, strict=False)
    assert not missing.unexpected_keys
    info = payload.get("extra", {})
    if info.get("stage") != "finetune":
        pytest.skip(f"{task}: the head stage scored best in this tiny run")
    from fashionlab.engine.fit import validate
    from fashionlab.engine.predictor import make_loader

    _, val_ds = hooks.datasets(hooks.cfg.imgsz)
    rescored = validate(net, hooks, make_loader(val_ds, 16, 0), "cpu")
    assert rescored == pytest.approx(info["value"], abs=1e-5), f"{task}: best.pt does not reproduce its score"


def yaml_config(run: Path) -> dict:
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg.pop("task")
    return cfg


def test_predict_evaluate_submit(trained) -> None:
    task, source, root, result = trained
    info = get_task(task)
    out = api.predict(task, result.best, source, root / "pred.csv", workers=0)
    assert out.is_file() and out.stat().st_size > 0
    submission = api.submit(task, [result.best], source, root / "submission.csv", workers=0)  # the task's own TTA
    assert submission.is_file()
    if task == "classify":
        truth = result.run / "predictions" / "val_truth.csv"
        scores = api.evaluate(task, result.run / "predictions" / "val.csv", truth)
    elif task == "retrieval":
        scores = api.evaluate(task, out, source.parent / "matches.csv")
    else:
        scores = api.evaluate(task, out, source)
    assert info.metric in scores
    if len(info.combine) == 1 and "vote" not in info.combine:
        with pytest.raises(FashionlabError, match=f"--combine vote: {task} combines several weights by"):
            api.predict(task, [result.best, result.best], source, root / "p2.csv", combine="vote")


def test_export_and_serve(trained) -> None:
    task, source, root, result = trained
    info = get_task(task)
    if info.exportable:
        pytest.importorskip("onnxruntime")
        summary = api.export(result.best, root / "model.onnx")
        assert summary["max_abs_diff"] < 1e-3
    else:
        with pytest.raises(FashionlabError, match=f"ONNX export is for .* models, not {task}"):
            api.export(result.best, root / "model.onnx")
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    image = io.BytesIO()
    Image.fromarray(np.full((64, 48, 3), 120, np.uint8)).save(image, format="JPEG")
    if info.serve_adapter:
        with TestClient(api.service([result.best])) as client:
            response = client.post(f"/predict/{task}", files={"file": ("a.jpg", image.getvalue(), "image/jpeg")})
            assert response.status_code == 200, response.text
            body = response.json()
            if task == "keypoints":
                points = body["keypoints"]
                assert len(points) == 24 and all(0 <= p["x"] <= 47 and 0 <= p["y"] <= 63 for p in points)
    else:
        index = api.index(task, result.best, source, root / "index", device="cpu")
        with TestClient(api.service([], index=index)) as client:
            response = client.post("/search?top=3", files={"file": ("a.jpg", image.getvalue(), "image/jpeg")})
            assert response.status_code == 200 and len(response.json()["results"]) == 3


def test_lr_find_runs_the_tasks_own_step(trained) -> None:
    task, _, root, result = trained
    found = api.lr_find(task, data=yaml_config(result.run)["data"], out=root / "lr.png", steps=6, **options(task))
    lrs, losses = np.array(found["lrs"]), np.array(found["losses"])
    assert np.all(np.diff(np.log(lrs)) > 0) and np.isfinite(losses).all()
    slopes = np.gradient(losses, np.log10(lrs))
    assert found["suggested_lr"] == lrs[int(np.argmin(slopes[: max(1, int(len(slopes) * 0.9))]))]


@pytest.mark.parametrize("task", ["styles", "keypoints", "classify", "attributes", "retrieval"])
def test_split_seed_fixes_the_split(task: str, tmp_path: Path) -> None:
    data, _ = task_data(task, tmp_path / "data")

    def val_rows(seed: int, split_seed: int | None) -> list[str]:
        hooks = get_task(task).hooks(api.config(task, data=str(data), seed=seed, split_seed=split_seed,
                                                **options(task)))
        hooks.load_data()
        return sorted(str(p) for p in hooks.val_set.paths)

    assert val_rows(0, 7) == val_rows(1, 7)  # two models meant to share folds share them
    assert val_rows(0, 7) != val_rows(0, 8) or task == "retrieval"  # 8 items: two seeds may pick the same two
    assert val_rows(3, None) == val_rows(0, 3)  # without split_seed, the seed splits


def test_a_run_is_never_overwritten(tmp_path: Path) -> None:
    data, _ = task_data("classify", tmp_path / "data")
    run = tmp_path / "run"
    first = api.train("classify", data=str(data), out=str(run), epochs=1, **options("classify"))
    before = first.best.read_bytes()
    with pytest.raises(FashionlabError, match="holds a finished run; continue it with --resume .* or replace it "
                                              "with --exist-ok"):
        api.train("classify", data=str(data), out=str(run), epochs=1, seed=5, **options("classify"))
    assert first.best.read_bytes() == before
    (run / "weights" / "epoch9.pt").write_bytes(b"left over")
    api.train("classify", data=str(data), out=str(run), epochs=1, seed=5, exist_ok=True, **options("classify"))
    assert not (run / "weights" / "epoch9.pt").exists()  # --exist-ok replaces the run, never mixes two


def test_a_failed_start_leaves_no_run_folder(tmp_path: Path) -> None:
    data, _ = task_data("classify", tmp_path / "data")
    with pytest.raises(FashionlabError, match="unknown model"):
        api.train("classify", data=str(data), out=str(tmp_path / "run"), **{**options("classify"), "model": "nope0"})
    assert not (tmp_path / "run").exists()
    with pytest.raises(FashionlabError, match="output_stride"):
        api.train("keypoints", data=str(task_data("keypoints", tmp_path / "kp")[0]), out=str(tmp_path / "run"),
                  **{**options("keypoints"), "imgsz": 66})
    assert not (tmp_path / "run").exists()


def test_ensemble_error_names_the_real_option(tmp_path: Path) -> None:
    rows = "image,a,b\nx.jpg,0.2,0.8\n"
    files = [tmp_path / f"{i}.csv" for i in range(2)]
    for f in files:
        f.write_text(rows)
    with pytest.raises(FashionlabError, match=r"needs one weight per model \(--weight, repeated\)"):
        api.ensemble("styles", files, tmp_path / "e.csv", method="weighted")


def test_training_on_every_photo_keeps_the_last_averaged_weights(tmp_path: Path) -> None:
    """val_fraction 0 (the competitions' final fit): no validation, best.pt = the last epoch's EMA weights."""
    data, _ = task_data("classify", tmp_path / "data")
    result = api.train("classify", data=str(data), out=str(tmp_path / "run"), epochs=2, val_fraction=0.0,
                       ema_decay=0.5, **options("classify"))
    payload = torch.load(result.best, map_location="cpu", weights_only=True)
    assert payload["extra"]["stage"] == "finetune" and payload["extra"]["epoch"] == 2
    assert payload["extra"]["value"] is None
    history = pd.read_csv(result.run / "history.csv")
    assert history["epoch"].tolist() == [1, 2] and history["val_metric"].isna().all()
    last = torch.load(result.run / "weights" / "last.ckpt", map_location="cpu", weights_only=True)
    average = {k.removeprefix("net."): v for k, v in last["state_dict"].items()}  # Lightning: averaged weights
    raw = {k.removeprefix("net."): v for k, v in last["current_model_state"].items()}
    name = "head.heads.0.weight"
    assert torch.equal(payload["state_dict"][name], average[name])  # best.pt holds the average,
    assert not torch.equal(payload["state_dict"][name], raw[name])  # not the raw net
    with pytest.raises(FashionlabError, match="patience .* needs a validation set"):
        api.train("classify", data=str(data), out=str(tmp_path / "r2"), val_fraction=0.0, patience=2,
                  **options("classify"))


@pytest.mark.parametrize("task", ["classify", "attributes", "styles"])
def test_tail_stage_on_cached_maps(task: str, tmp_path: Path) -> None:
    """The classification family's first stage: the backbone's last blocks + heads trained on cached maps
    of the photos at tail_imgsz; best.pt is an ordinary classifier that predicts at that size."""
    data, source = task_data(task, tmp_path / "data")
    opts = {**options(task), "first_stage": "tail", "tail_from": 3, "tail_imgsz": 48, "tail_epochs": 3}
    result = api.train(task, data=str(data), out=str(tmp_path / "run"), epochs=0, **opts)
    history = pd.read_csv(result.run / "history.csv")
    assert set(history["stage"]) == {"tail"} and len(history) >= 3
    payload = torch.load(result.best, map_location="cpu", weights_only=True)
    assert payload["extra"]["stage"] == "tail" and payload["imgsz"] == 48
    import lightning.pytorch as pl

    hooks = get_task(task).hooks(api.config(task, data=str(data), **opts))
    pl.seed_everything(0, verbose=False)  # as fit seeds it: the same initial weights
    hooks.load_data()
    before = hooks.build_model().state_dict()
    changed = [k for k, v in payload["state_dict"].items() if not torch.equal(v, before[k])]
    assert changed and all(k.startswith(("backbone.blocks.3", "backbone.blocks.4", "backbone.conv_head",
                                         "backbone.bn2", "head.")) for k in changed)  # the stem stayed frozen
    assert api.predict(task, result.best, source, tmp_path / "p.csv", workers=0).is_file()


def test_tail_stage_fits_the_time_budget(tmp_path: Path) -> None:
    data, _ = task_data("classify", tmp_path / "data")
    opts = {**options("classify"), "first_stage": "tail", "tail_from": 3, "tail_imgsz": 48}
    result = api.train("classify", data=str(data), out=str(tmp_path / "run"), time_budget=25, **opts)
    plan = json.loads((result.run / "plan.json").read_text())
    assert plan["epochs"] == 0 and "whole time budget" in plan["reason"]
    history = pd.read_csv(result.run / "history.csv")
    assert (history["stage"] == "tail").all() and result.metrics["train_seconds"] < 25 + 10
