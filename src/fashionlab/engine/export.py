"""ONNX export of classification-style weights, and ``OnnxPredictor`` to run them with ONNX Runtime.

The exported graph has one input and one output, whatever the number of heads:

- ``images``: float32 [N, 3, H, W] (N dynamic; H = W = the checkpoint's ``imgsz``), normalised with
  the checkpoint's mean/std exactly as ``fashionlab.data.transforms.eval_transform`` does;
- ``logits``: float32 [N, T, L] -- every head's logits for every image (T heads, L the widest head),
  padded with ``MASK_VALUE`` (-1e4) beyond each head's width, as ``ClassifierNet`` masks them.

All heads at once (rather than a ``task_index`` input) keeps the graph free of data-dependent
control flow, costs one backbone pass per image, and gives the server every attribute in one call;
``OnnxPredictor(images, task_index)`` picks each row's head to match ``ClassifierNet.forward``.
The checkpoint's metadata (task, heads, class names, imgsz, mean, std) is stored in the ONNX model's
``metadata_props`` under ``fashionlab`` (JSON), so an ``.onnx`` file is self-describing. The legacy
TorchScript exporter (``dynamo=False``) is used: no onnxscript dependency, and it handles timm's
EfficientNets; ``check=True`` compares ONNX Runtime with PyTorch on a random batch.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import FashionlabError
from ..io import check_output, write_error
from ..models.losses import activation
from ..models.net import MASK_VALUE, ClassifierNet
from ..data.labelled import TaskMeta
from .checkpoint import LoadedModel, load_weights

ONNX_FORMAT = "fashionlab-onnx-1"
METADATA_KEY = "fashionlab"


class AllHeads(nn.Module):
    """``images [N,3,H,W] -> logits [N,T,L]``: one backbone pass, every head, padded with MASK_VALUE."""

    def __init__(self, net: ClassifierNet) -> None:
        super().__init__()
        self.net = net
        self.sizes = list(net.head.sizes)
        self.width = max(self.sizes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.net.head.neck(self.net.backbone(images))
        outs = [F.pad(head(features), (0, self.width - n), value=MASK_VALUE)
                for head, n in zip(self.net.head.heads, self.sizes)]
        return torch.stack(outs, 1)


def _need(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise FashionlabError(f"ONNX support needs the '{module}' package: pip install onnx onnxruntime") from None


def _session(path: str | Path, threads: int | None = None):
    ort = _need("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise FashionlabError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None


def export_onnx(weights: Path, out: Path, opset: int = 17, check: bool = True, atol: float = 1e-3) -> dict[str, Any]:
    """Write ``weights`` (a fashionlab best.pt) as ONNX to ``out``; returns a summary dict.

    With ``check``, ONNX Runtime and PyTorch run the same random batch of 3 (and of 1) and the max
    absolute differences of logits and probabilities are reported; above ``atol`` is an error.
    """
    onnx = _need("onnx")
    weights, out = Path(weights), check_output(Path(out))
    started = time.perf_counter()
    model = load_weights(weights, "cpu")
    wrapper = AllHeads(model.net).eval()
    example = torch.randn(2, 3, model.imgsz, model.imgsz)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
            torch.onnx.export(wrapper, (example,), tmp, input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        proto = onnx.load(tmp)
        info = {"format": ONNX_FORMAT, "task": model.task, "model": _model_name(weights),
                "imgsz": model.imgsz, "mean": list(model.mean), "std": list(model.std),
                "meta": model.meta.to_dict(), "multilabel": model.multilabel, "source": str(weights)}
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(info)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    except FashionlabError:
        raise
    except OSError as exc:
        failure = write_error(out, exc)
        if failure is exc:
            raise FashionlabError(f"{out}: ONNX export failed ({exc.strerror or exc})") from None
        raise failure from None
    except Exception as exc:  # noqa: BLE001 - exporter failures become one line
        raise FashionlabError(f"{weights}: ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    summary: dict[str, Any] = {"out": str(out), "opset": opset, "task": model.task, "heads": model.meta.tasks,
                               "inputs": {"images": ["batch", 3, model.imgsz, model.imgsz]},
                               "outputs": {"logits": ["batch", len(model.meta.tasks), wrapper.width]},
                               "bytes": out.stat().st_size}
    if check:
        summary.update(compare(wrapper, OnnxPredictor(out), model.imgsz, model.multilabel))
        if summary["max_abs_diff"] > atol:
            raise FashionlabError(f"{out}: ONNX Runtime differs from PyTorch by {summary['max_abs_diff']:.2e} "
                                  f"(> {atol:g}) on a random batch")
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary


def _model_name(weights: Path) -> str:
    payload = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    return str(payload.get("model", ""))


@torch.no_grad()
def compare(wrapper: AllHeads, predictor: "OnnxPredictor", imgsz: int, multilabel: bool,
            seed: int = 0) -> dict[str, Any]:
    """Max |ONNX - PyTorch| of logits and probabilities on random batches of 3 and 1."""
    gen = torch.Generator().manual_seed(seed)
    diff = prob_diff = 0.0
    for n in (3, 1):
        images = torch.randn(n, 3, imgsz, imgsz, generator=gen)
        ref, got = wrapper(images).numpy(), predictor.all_logits(images.numpy())
        diff = max(diff, float(np.abs(ref - got).max()))
        for t, size in enumerate(wrapper.sizes):
            p_ref = activation(multilabel)(torch.from_numpy(ref[:, t, :size])).numpy()
            p_got = activation(multilabel)(torch.from_numpy(got[:, t, :size])).numpy()
            prob_diff = max(prob_diff, float(np.abs(p_ref - p_got).max()))
    return {"max_abs_diff": diff, "max_prob_diff": prob_diff, "checked_batches": [3, 1]}


class OnnxPredictor:
    """An exported model run by ONNX Runtime on the CPU.

    ``all_logits(images)`` gives [N, T, L] (numpy); calling it like ``ClassifierNet`` --
    ``predictor(images, task_index)`` -- gives each row's own head's logits [N, L] as a tensor, so it
    drops into ``engine.predictor.predict_probs`` (``eval``, ``to('cpu')`` and ``head.sizes`` exist).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FashionlabError(f"{path}: ONNX file not found")
        self.session = _session(self.path, threads)
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        try:
            info = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            info = {}
        if info.get("format") != ONNX_FORMAT:
            raise FashionlabError(f"{path}: not a fashionlab ONNX export (no '{METADATA_KEY}' metadata; "
                                  "export with `fashionlab export --format onnx`)")
        self.info = info
        self.task: str = info["task"]
        self.meta = TaskMeta.from_dict(info["meta"])
        self.imgsz: int = int(info["imgsz"])
        self.mean, self.std = tuple(info["mean"]), tuple(info["std"])
        self.head = SimpleNamespace(sizes=self.meta.head_sizes)

    def all_logits(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"images": np.ascontiguousarray(images, dtype=np.float32)})[0]

    def __call__(self, images: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        logits = self.all_logits(images.detach().cpu().numpy())
        rows = np.arange(len(logits))
        return torch.from_numpy(logits[rows, task_index.detach().cpu().numpy()])

    def eval(self) -> "OnnxPredictor":
        return self

    def to(self, device: str | torch.device) -> "OnnxPredictor":
        if str(device) != "cpu":
            raise FashionlabError(f"{self.path}: ONNX models run on the CPU here, not on '{device}'")
        return self


def load_onnx(path: str | Path, device: str = "cpu") -> LoadedModel:
    """A ``LoadedModel`` whose ``net`` is an ``OnnxPredictor`` (the hook for ``load_weights``)."""
    predictor = OnnxPredictor(path).to(device)
    return LoadedModel(predictor, predictor.task, predictor.meta, predictor.imgsz, predictor.mean, predictor.std,
                       {"onnx": str(path)}, bool(predictor.info.get("multilabel", False)))
