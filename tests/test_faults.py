"""Fault injection (issue 18, "nothing lost, nothing crashes"): each case is a fault a new user meets, and
what must follow is one line naming the file, the right exit code, and the previous output intact.

Images: 16-bit PNGs, EXIF-rotated photos, decompression bombs, the pixel cap, broken files (--skip-bad).
Outputs: disk full mid-write (best.pt, JSON, Lightning's last.ckpt, then --resume), an --out that is a
folder / read-only, checked before any work. Inputs: unsafe or damaged weights and checkpoints, damaged
index folders, label typos, out-of-range probabilities, unknown classes. Service: admission (429/503 +
Retry-After), cancelled work after a 504 or a disconnect, the decode pixel budget.
"""
from __future__ import annotations

import asyncio
import builtins
import errno
import io
import json
import logging
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionlab import api
from fashionlab.data import images as image_policy
from fashionlab.data.images import check_images, load_rgb
from fashionlab.engine.checkpoint import save_weights
from fashionlab.errors import FashionlabError
from fashionlab.io import write_json
from fashionlab.models.backbone import create_backbone
from fashionlab.models.net import ClassifierNet
from fashionlab.tasks.base import TaskMeta

from .conftest import TINY

CLASSES = TaskMeta(["label"], [["glass", "metal", "paper"]])


# --- generated files ---------------------------------------------------------------------------------

def classifier(path: Path, seed: int = 0) -> Path:
    """A random test_efficientnet classify model saved like a run's best.pt."""
    torch.manual_seed(seed)
    backbone = create_backbone("test_efficientnet", pretrained="none")
    net = ClassifierNet(backbone.model, backbone.num_features, CLASSES.head_sizes).eval()
    with torch.no_grad():
        net.head.heads[0].weight.mul_(20.0)  # distinct inputs give clearly distinct probabilities
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_weights(path, net, "classify", CLASSES, "test_efficientnet", 32, backbone.mean, backbone.std)


def png16(path: Path) -> np.ndarray:
    """A 16-bit grayscale gradient (PIL mode I;16); returns the 8-bit image it must decode to."""
    ramp = np.linspace(0, 65535, 48 * 48).reshape(48, 48).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ramp).save(path)
    return np.repeat((ramp >> 8).astype(np.uint8)[:, :, None], 3, axis=2)


def sideways(path: Path, upright: np.ndarray, fmt: str = "PNG", orientation: int = 6) -> None:
    """``upright`` stored rotated, with the EXIF orientation that turns it back (6: rotate 90 clockwise)."""
    stored = np.rot90(upright, k=1 if orientation == 6 else -1)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(stored)).save(path, fmt, exif=exif)


def bomb(path: Path, side: int = 30_000) -> Path:
    """A PNG whose header declares side x side pixels (900 M by default) in a few hundred bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(side)
    data = zlib.compress(row * 4, 9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def picture(seed: int, size: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    arr[: size // 4, : size // 2] = (250, 10, 10)  # a red block in the top-left corner
    return arr


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text and "weights_only" not in text, text
    return text


# --- the image policy --------------------------------------------------------------------------------

def test_16bit_png_decodes_by_its_range_not_white(tmp_path: Path) -> None:
    expected = png16(tmp_path / "g16.png")
    got = load_rgb(tmp_path / "g16.png")
    assert got.dtype == np.uint8 and got.shape == (48, 48, 3)
    assert abs(got.mean() - expected.mean()) < 0.5 and got.mean() < 200  # 127.5, not 255
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("fmt, orientation", [("JPEG", 6), ("PNG", 8)])
def test_exif_orientation_gives_the_upright_image(tmp_path: Path, fmt: str, orientation: int) -> None:
    upright = np.zeros((30, 60, 3), np.uint8)
    upright[:10, :20] = (255, 0, 0)  # red top-left corner of a wide image
    path = tmp_path / f"phone.{fmt.lower()}"
    sideways(path, upright, fmt, orientation)
    assert Image.open(path).size == (30, 60)  # stored tall
    got = load_rgb(path)
    assert got.shape == (30, 60, 3) and image_policy.image_size(path) == (60, 30)
    assert got[2:8, 2:18, 0].mean() > 200 and got[20:, 40:, 0].mean() < 60  # the red corner is top-left again
    drafted = load_rgb(path, draft=8)  # JPEG draft / box reduction keep the orientation
    assert drafted.shape[1] > drafted.shape[0]


def test_bomb_and_pixel_cap_are_bad_images(tmp_path: Path, monkeypatch) -> None:
    path = bomb(tmp_path / "bomb.png")
    with pytest.raises(FashionlabError, match="bomb.png") as err:
        load_rgb(path)
    one_line(err)
    good = tmp_path / "ok.png"
    Image.fromarray(picture(0)).save(good)
    assert check_images([good, path], skip_bad=True) == [0]
    monkeypatch.setattr(image_policy, "MAX_PIXELS", 1000)  # 40 x 40 = 1600 pixels: over the cap
    with pytest.raises(FashionlabError, match="ok.png: image of 40x40 pixels exceeds the 1,000-pixel limit"):
        load_rgb(good)


def test_train_skips_a_bomb_with_skip_bad_and_names_it_without(class_folders: Path, tmp_path: Path) -> None:
    bomb(class_folders / "red" / "bomb.png")
    png16(class_folders / "green" / "deep.png")  # 16-bit images train too
    with pytest.raises(FashionlabError, match=r"bomb\.png.*--skip-bad") as err:
        api.train("classify", data=str(class_folders), out=str(tmp_path / "r1"), epochs=0, **TINY)
    one_line(err)
    result = api.train("classify", data=str(class_folders), out=str(tmp_path / "r2"), epochs=0, skip_bad=True, **TINY)
    assert result.best.is_file()


def test_predict_sees_16bit_and_exif_photos_as_their_8bit_upright_twins(tmp_path: Path) -> None:
    weights = classifier(tmp_path / "w" / "best.pt")
    src = tmp_path / "src"
    eight = png16(src / "deep.png")
    Image.fromarray(eight).save(src / "flat.png")
    upright = picture(1)
    Image.fromarray(upright).save(src / "upright.png")
    sideways(src / "phone.png", upright)
    out = api.predict("classify", weights, src, tmp_path / "pred.csv", workers=0)
    rows = dict(line.split(",", 1) for line in out.read_text().splitlines()[1:])
    assert rows["deep.png"] == rows["flat.png"]
    assert rows["phone.png"] == rows["upright.png"]


def test_predict_skip_bad_for_classify_keypoints_retrieval(tmp_path: Path) -> None:
    weights = classifier(tmp_path / "w" / "best.pt")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(picture(i)).save(src / f"{i}.png")
    bomb(src / "bomb.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(FashionlabError, match="--skip-bad") as err:
        api.predict("classify", weights, src, tmp_path / "p.csv", workers=0)
    one_line(err)
    out = api.predict("classify", weights, src, tmp_path / "p.csv", workers=0, skip_bad=True)
    assert sorted(line.split(",")[0] for line in out.read_text().splitlines()[1:]) == ["0.png", "1.png", "2.png"]
    _keypoints_skip_bad(tmp_path)
    _retrieval_skip_bad(tmp_path)


def _keypoints_skip_bad(tmp_path: Path) -> None:
    from fashionlab.tasks.keypoints.config import KeypointsConfig
    from fashionlab.tasks.keypoints.features import create_feature_backbone
    from fashionlab.tasks.keypoints.model import build_net, save_keypoints, spec_from_config

    spec = spec_from_config(KeypointsConfig(model="test_efficientnet", imgsz=32, pretrained="none"))
    backbone = create_feature_backbone("test_efficientnet", "none")
    weights = save_keypoints(tmp_path / "kp.pt", build_net(backbone, spec).eval(), spec, backbone.mean, backbone.std)
    src = tmp_path / "kp" / "skirt"
    src.mkdir(parents=True)
    Image.fromarray(picture(5)).save(src / "a.png")
    (src / "broken.png").write_bytes(b"junk")
    with pytest.raises(FashionlabError, match="--skip-bad"):
        api.predict("keypoints", weights, src.parent, tmp_path / "kp.csv", workers=0)
    out = api.predict("keypoints", weights, src.parent, tmp_path / "kp.csv", workers=0, skip_bad=True)
    assert [line.split(",")[0] for line in out.read_text().splitlines()[1:]] == ["skirt/a.png"]


def _retrieval_skip_bad(tmp_path: Path) -> None:
    from fashionlab.data.synth.retrieval import synth_retrieval
    from fashionlab.tasks.retrieval.features import create_feature_map
    from fashionlab.tasks.retrieval.model import build_net, save_retrieval

    spec = {"model": "test_efficientnet", "imgsz": 32, "branches": ["global"], "embed_dim": 8, "stripes": [2],
            "rings": 2, "output_stride": 32, "categories": []}
    torch.manual_seed(0)
    net = build_net(create_feature_map("test_efficientnet", "none", 32), spec).eval()
    weights = save_retrieval(tmp_path / "rt.pt", net, spec, (0.5,) * 3, (0.5,) * 3)
    data = synth_retrieval(tmp_path / "rt", n_items=4, size=32, seed=0)
    shop = next(line.split(",")[0] for line in (data / "items.csv").read_text().splitlines()[1:] if ",shop" in line)
    (data / "images" / shop).write_bytes(b"junk")
    with pytest.raises(FashionlabError, match="--skip-bad"):
        api.predict("retrieval", weights, data / "items.csv", tmp_path / "ranks.csv", workers=0)
    out = api.predict("retrieval", weights, data / "items.csv", tmp_path / "ranks.csv", workers=0, skip_bad=True)
    assert shop not in out.read_text()


def test_keypoints_coordinates_are_read_in_the_upright_frame(tmp_path: Path) -> None:
    from fashionlab.tasks.keypoints.dataset import read_records
    from fashionlab.tasks.keypoints.metric import HEADER, KEYPOINT_NAMES

    sideways(tmp_path / "skirt" / "a.jpg", np.zeros((40, 80, 3), np.uint8), "JPEG")  # stored 40 x 80, shown 80 x 40
    points = {"waistband_left": (70, 10, 1), "waistband_right": (75, 10, 1), "hemline_left": (60, 30, 1),
              "hemline_right": (78, 30, 1)}  # x up to 78: inside the displayed image only
    cells = ["{}_{}_{}".format(*points[n]) if n in points else "-1_-1_-1" for n in KEYPOINT_NAMES]
    (tmp_path / "train.csv").write_text(",".join(HEADER) + "\n" + ",".join(["skirt/a.jpg", "skirt", *cells]) + "\n")
    records = read_records(tmp_path)
    assert records.sizes.tolist() == [[80, 40]]


# --- outputs: checked first, written atomically, disk full keeps the previous file ----------------------

def test_predict_checks_out_before_any_work(tmp_path: Path, monkeypatch) -> None:
    import fashionlab.tasks.classifier.predict as classifier_predict
    import fashionlab.io as fio

    weights = classifier(tmp_path / "w" / "best.pt")
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(picture(0)).save(src / "a.png")

    def never(*args, **kwargs):
        raise AssertionError("predicted before checking --out")

    monkeypatch.setattr(classifier_predict, "predict_probs", never)
    (tmp_path / "folder").mkdir()
    with pytest.raises(FashionlabError, match="is a folder") as err:
        api.predict("classify", weights, src, tmp_path / "folder")
    one_line(err)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FashionlabError, match="is a file, not a folder"):
        api.predict("classify", weights, src, tmp_path / "file" / "pred.csv")
    real = fio.tempfile.mkstemp

    def read_only(*args, **kwargs):
        if str(kwargs.get("dir", "")).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(fio.tempfile, "mkstemp", read_only)
    with pytest.raises(FashionlabError, match="read-only filesystem") as err:
        api.predict("classify", weights, src, tmp_path / "ro" / "pred.csv")
    one_line(err)


def _enospc_after(limit: int):
    """A torch.save that writes ``limit`` bytes, then fails as a full disk does."""
    def save(obj, f, *args, **kwargs):
        f.write(b"\0" * limit)
        raise OSError(errno.ENOSPC, "No space left on device")
    return save


def test_disk_full_keeps_the_previous_weights_and_json(tmp_path: Path, monkeypatch) -> None:
    path = classifier(tmp_path / "run" / "weights" / "best.pt")
    before = path.read_bytes()
    write_json(tmp_path / "run" / "metrics.json", {"map": 0.5})
    monkeypatch.setattr(torch, "save", _enospc_after(4096))
    with pytest.raises(FashionlabError, match="best.pt: cannot write: no space left") as err:
        classifier(path)
    assert "previous file is unchanged" in one_line(err)
    assert path.read_bytes() == before
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EDQUOT, "Disk quota exceeded")))
    with pytest.raises(FashionlabError, match="metrics.json: cannot write: disk quota"):
        write_json(tmp_path / "run" / "metrics.json", {"map": 0.9})
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == {"map": 0.5}
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name.startswith(".")]  # no temp file left


class _FullDisk:
    """Files opened for writing whose name holds ``name``: after ``skip`` such opens, each one takes
    ``limit`` bytes and then fails with ENOSPC. A move from another folder is a copy (as from /tmp to
    another filesystem), so a writer that moves a finished temporary file meets the full disk too."""

    def __init__(self, monkeypatch, name: str, skip: int, limit: int) -> None:
        self.name, self.skip, self.limit, self.opens = name, skip, limit, 0
        self.real_open, real_rename = builtins.open, os.rename

        def rename(src, dst, *args, **kwargs):
            if Path(src).parent != Path(dst).parent:
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            return real_rename(src, dst, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", self.open)
        monkeypatch.setattr(os, "rename", rename)

    def open(self, file, mode="r", *args, **kwargs):
        handle = self.real_open(file, mode, *args, **kwargs)
        if self.name not in os.path.basename(str(file)) or not any(c in mode for c in "wax"):
            return handle
        self.opens += 1
        return handle if self.opens <= self.skip else _Filling(handle, self.limit)


class _Filling:
    def __init__(self, handle, limit: int) -> None:
        self._handle, self._left = handle, limit

    def write(self, data) -> int:
        if len(data) > self._left:
            self._handle.write(bytes(data[: self._left]))
            self._handle.flush()
            self._left = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._left -= len(data)
        return self._handle.write(data)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")  # no sendfile shortcut: bytes go through write()

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


def test_disk_full_during_training_keeps_last_ckpt_and_resumes(class_folders: Path, tmp_path: Path,
                                                               monkeypatch) -> None:
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        disk = _FullDisk(patch, "last.ckpt", skip=1, limit=50_000)  # the 2nd save of last.ckpt fails
        with pytest.raises(FashionlabError, match=r"last\.ckpt: cannot write: no space left") as err:
            api.train("classify", data=str(class_folders), out=str(run), epochs=3, **{**TINY, "head_epochs": 0})
        one_line(err)
        assert disk.opens >= 2
    state = torch.load(run / "weights" / "last.ckpt", map_location="cpu", weights_only=True)  # intact
    assert state["epoch"] == 0
    assert not [p for p in (run / "weights").iterdir() if p.name.startswith(".")]
    result = api.train("classify", resume=str(run))
    assert result.best.is_file()


def test_damaged_or_unsafe_checkpoints_are_one_line(class_folders: Path, tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo never run",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "fashionlab-classifier-1", "x": Payload()}, evil)
    with pytest.raises(FashionlabError, match="evil.pt: not a fashionlab weights file") as err:
        api.predict("classify", evil, class_folders, tmp_path / "p.csv")
    one_line(err)
    with pytest.raises(FashionlabError, match="evil.pt: cannot read weights") as err:
        api.train("classify", data=str(class_folders), out=str(tmp_path / "r"), **{**TINY, "pretrained": str(evil)})
    one_line(err)
    run = tmp_path / "run"
    api.train("classify", data=str(class_folders), out=str(run), epochs=1, **{**TINY, "head_epochs": 0})
    ckpt = run / "weights" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(FashionlabError, match=r"last\.ckpt: cannot resume .*truncated.*delete it") as err:
        api.train("classify", resume=str(run), epochs=2)
    one_line(err)


def test_damaged_index_folder_is_one_line(tmp_path: Path) -> None:
    faiss = pytest.importorskip("faiss")
    from fashionlab.tasks.retrieval.search import read_index

    index = tmp_path / "index"
    index.mkdir()
    flat = faiss.IndexFlatIP(4)
    flat.add(np.eye(4, dtype=np.float32)[:2])
    (index / "index.faiss").write_bytes(faiss.serialize_index(flat).tobytes())
    (index / "gallery.csv").write_text("id,category,path\na,,\nb,,\n")
    write_json(index / "meta.json", {"format": "fashionlab-retrieval-index-1", "dim": 4, "count": 2, "kind": "flat",
                                     "fusion": "concat", "model_id": "x", "weights": [], "tta": "none"})
    assert read_index(index)[2] == ["a", "b"]
    good = (index / "index.faiss").read_bytes()
    (index / "index.faiss").write_bytes(good[: len(good) // 2])
    with pytest.raises(FashionlabError, match=r"index\.faiss: damaged or not a FAISS index") as err:
        read_index(index)
    one_line(err)
    (index / "index.faiss").write_bytes(good)
    (index / "gallery.csv").unlink()
    with pytest.raises(FashionlabError, match=r"gallery\.csv: missing"):
        read_index(index)
    (index / "meta.json").write_text("{not json")
    with pytest.raises(FashionlabError, match=r"meta\.json: damaged"):
        read_index(index)


# --- labels and prediction files ---------------------------------------------------------------------

def test_task_name_typo_is_caught(attributes_release: Path, tmp_path: Path, caplog) -> None:
    from fashionlab.tasks.attributes.task import check_task_names

    label = attributes_release / "Annotations" / "label.csv"
    lines = label.read_text().splitlines()
    lines[5] = lines[5].replace("colour_labels", "colour_lables")
    label.write_text("\n".join(lines) + "\n")
    with pytest.raises(FashionlabError, match=r"line 6: task 'colour_lables' has 1 image.*'colour_labels'") as err:
        api.train("attributes", data=str(attributes_release), out=str(tmp_path / "r"), epochs=0, **TINY)
    one_line(err)
    lines[6] = lines[6].replace("colour_labels", "colour_lables")
    label.write_text("\n".join(lines) + "\n")
    (attributes_release / "CLASSES.md").write_text("colour_labels letter order: red, green, blue\n"
                                                   "bright_labels letter order: light, dark\n")
    with caplog.at_level(logging.WARNING):
        check_task_names(label, attributes_release, None)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "'colour_lables' (line 6) is not a FashionAI task" in warned and "colour_labels 16" in warned
    assert "bright_labels 12" in warned and "'bright_labels'" not in warned  # declared tasks are not flagged
    caplog.clear()
    check_task_names(label, attributes_release, ["colour_labels", "bright_labels"])  # an allow-list
    assert not caplog.records


def test_evaluate_rejects_bad_probabilities_and_unknown_classes(tmp_path: Path) -> None:
    truth = tmp_path / "label.csv"
    truth.write_text("a.jpg,t,yn\nb.jpg,t,ny\n")
    pred = tmp_path / "sub.csv"
    pred.write_text("a.jpg,t,0.9;0.1\nb.jpg,t,-5;0.5\n")
    with pytest.raises(FashionlabError, match=r"sub\.csv line 2: value '-5' is not a probability in \[0, 1\]"):
        api.evaluate("attributes", pred, truth)
    ctruth, cpred = tmp_path / "truth.csv", tmp_path / "pred.csv"
    ctruth.write_text("image,label\na.jpg,cat\nb.jpg,dog\n")
    cpred.write_text("image,label,score\na.jpg,cat,0.9\nb.jpg,dgo,0.8\n")
    with pytest.raises(FashionlabError, match=r"pred\.csv line 3: label 'dgo' .* not a class of the truth"):
        api.evaluate("classify", cpred, ctruth)


def test_cli_bomb_and_bad_out_are_one_line_exit_2(tmp_path: Path) -> None:
    weights = classifier(tmp_path / "w" / "best.pt")
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(picture(0)).save(src / "a.png")
    bomb(src / "bomb.png")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    for out in (tmp_path / "pred.csv", tmp_path):
        proc = subprocess.run([sys.executable, "-m", "fashionlab.cli", "predict", "classify", "--weights", str(weights),
                               "--source", str(src), "--out", str(out), "--workers", "0"],
                              capture_output=True, text=True, env=env)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-2000:]
        assert ("bomb.png" in lines[0] and "--skip-bad" in lines[0]) if out != tmp_path else "is a folder" in lines[0]


# --- the service ---------------------------------------------------------------------------------------

@pytest.fixture()
def service(tmp_path: Path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from fashionlab.serve import create_app

    weights = classifier(tmp_path / "svc" / "best.pt")

    def make(**kwargs):
        return TestClient(create_app([weights], **kwargs))

    return make


def _post(client, data: bytes, ctype: str = "image/png"):
    return client.post("/predict/classify", content=data, headers={"content-type": ctype})


def test_serve_16bit_exif_and_bomb(service, tmp_path: Path) -> None:
    eight = png16(tmp_path / "deep.png")
    Image.fromarray(eight).save(tmp_path / "flat.png")
    upright = picture(3)
    Image.fromarray(upright).save(tmp_path / "upright.png")
    sideways(tmp_path / "phone.png", upright)
    with service() as client:
        probs = {name: _post(client, (tmp_path / name).read_bytes()).json()["probabilities"]
                 for name in ("deep.png", "flat.png", "phone.png", "upright.png")}
        assert probs["deep.png"] == probs["flat.png"] and probs["phone.png"] == probs["upright.png"]
        refused = _post(client, bomb(tmp_path / "bomb.png").read_bytes())
        assert refused.status_code == 413 and "bomb" in refused.json()["detail"]


def _slow(app, seconds: float) -> list[int]:
    """Make the classify model take ``seconds`` per batch; returns the list of batch sizes it ran."""
    batcher = app.state.serve.batchers["classify"]
    real, ran = batcher.fn, []

    def fn(items):
        ran.append(len(items))
        time.sleep(seconds)
        return real(items)

    batcher.fn = fn
    return ran


async def _burst(app, n: int, data: bytes, after: float = 0.0, linger: float = 0.0) -> list:
    """``n`` concurrent uploads; with ``after``, the first goes alone and the others ``after`` s later;
    the event loop (and the batcher's worker on it) lives on ``linger`` s after the answers."""
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        async def post(delay: float):
            await asyncio.sleep(delay)
            return await client.post("/predict/classify", content=data, headers={"content-type": "image/png"})

        responses = await asyncio.gather(*[post(after if i else 0.0) for i in range(n)])
        await asyncio.sleep(linger)
        return responses


def _png(seed: int = 0, size: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture(seed, size)).save(buf, "PNG")
    return buf.getvalue()


def test_full_queue_is_429_and_long_wait_is_503_with_retry_after(service) -> None:
    with service(max_queue=2, batch_window_ms=1) as client:
        app = client.app
        _slow(app, 0.3)
        statuses = [r.status_code for r in asyncio.run(_burst(app, 6, _png()))]
        assert statuses.count(429) >= 3 and statuses.count(200) >= 1 and set(statuses) <= {200, 429}
        busy = next(r for r in asyncio.run(_burst(app, 4, _png())) if r.status_code == 429)
        assert int(busy.headers["retry-after"]) >= 1 and "--max-queue 2" in busy.json()["detail"]
    with service(timeout_s=1.0) as client:
        admission = client.app.state.serve.admission
        admission.model_s, admission.in_flight = 5.0, 1  # one request ahead, measured 5 s an item
        refused = _post(client, _png())
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 4
        assert "expected wait 5.0 s exceeds the 1 s timeout" in refused.json()["detail"]
        admission.in_flight = 0
        assert _post(client, _png()).status_code == 200  # nothing ahead: an idle server never refuses


def test_timed_out_requests_never_reach_the_model_or_the_decoder(service, monkeypatch) -> None:
    import fashionlab.serve.app as app_module

    with service(timeout_s=0.5, batch_window_ms=1, decode_workers=1) as client:
        app = client.app
        ran = _slow(app, 1.0)
        results = asyncio.run(_burst(app, 3, _png(), after=0.2, linger=0.8))  # one runs 1 s, two wait behind it
        assert [r.status_code for r in results] == [504] * 3
        assert ran == [1] and app.state.serve.batchers["classify"].stats.dropped == 2
        real, decoded = app_module._decode_prepare, []

        def slow_decode(*args):
            decoded.append(1)
            time.sleep(1.0)
            return real(*args)

        monkeypatch.setattr(app_module, "_decode_prepare", slow_decode)
        assert [r.status_code for r in asyncio.run(_burst(app, 3, _png()))] == [504] * 3
        time.sleep(1.2)
        assert len(decoded) == 1  # the two queued behind the one decoding thread never started


def test_client_gone_cancels_the_work(service) -> None:
    import httpx

    with service(batch_window_ms=1) as client:
        app = client.app
        ran = _slow(app, 0.6)
        body = _png()

        async def gone() -> None:
            """A raw ASGI request whose client disconnects 0.1 s after sending the body."""
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive():
                if messages:
                    return messages.pop(0)
                await asyncio.sleep(0.1)
                return {"type": "http.disconnect"}

            async def send(message) -> None:
                pass

            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/predict/classify", "raw_path": b"/predict/classify",
                     "query_string": b"", "root_path": "", "server": ("t", 80), "client": ("c", 1),
                     "headers": [(b"content-type", b"image/png"), (b"content-length", str(len(body)).encode())]}
            await asyncio.sleep(0.1)  # the first request is in the model by now
            await app(scope, receive, send)

        async def both() -> int:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as ac:
                first = ac.post("/predict/classify", content=body, headers={"content-type": "image/png"})
                response, _ = await asyncio.gather(first, gone())
            await asyncio.sleep(0.8)  # the model is free again: a queued item would run now
            return response.status_code

        assert asyncio.run(both()) == 200
        assert ran == [1] and app.state.serve.admission.counts["client_gone"] == 1
        assert app.state.serve.batchers["classify"].stats.dropped == 1


def test_pixel_budget_bounds_parallel_decodes(service, monkeypatch) -> None:
    import fashionlab.serve.app as app_module

    real, active, peak, lock = app_module._decode_prepare, [0], [0], threading.Lock()

    def counted(*args):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.1)
            return real(*args)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(app_module, "_decode_prepare", counted)
    with service(decode_workers=4, decode_megapixels=0.05) as client:  # one 200x200 image (0.04 Mpx) at a time
        results = asyncio.run(_burst(client.app, 4, _png(size=200)))
        assert [r.status_code for r in results] == [200] * 4 and peak[0] == 1
        assert client.get("/health").json()["admission"]["pixel_budget"] == 50_000
