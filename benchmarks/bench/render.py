"""results.json -> results.md: a table per section, with the machine, date, commit and commands."""
from __future__ import annotations

from typing import Any

from .common import table


def _header(meta: dict[str, Any]) -> list[str]:
    m = meta.get("machine", {})
    mode = "QUICK mode (small subsets, 30 s budgets: a smoke run, not evidence)" if meta.get("quick") else "full suite"
    return [f"# fashionlab benchmark results ({mode})", "",
            f"- machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB RAM, GPU: {m.get('gpu')}; "
            f"torch {m.get('torch')} ({m.get('torch_threads')} threads), Python {m.get('python')}",
            f"- date: {meta.get('date')}; commit: {meta.get('commit')}", f"- command: `{meta.get('command')}`", ""]


def _accuracy(sec: dict[str, Any]) -> list[str]:
    rows = []
    for r in sec["rows"]:
        metric = r["metric"]
        tta = f"{r['fashionlab_tta_map']:.4f} map / {r['fashionlab_tta_accuracy']:.4f} acc" if "fashionlab_tta_map" in r else "—"
        extra = (f" (acc {r['fashionlab_accuracy']:.4f} vs {r['plain_accuracy']:.4f})" if "fashionlab_accuracy" in r else "")
        ours, plain = f"{r['fashionlab']:.4f}", f"{r['plain']:.4f}"
        ours, plain = (f"**{ours}**", plain) if r["fashionlab"] >= r["plain"] else (ours, f"**{plain}**")
        px = f"{r['imgsz']} / {r['test_imgsz']}" if "test_imgsz" in r else r["imgsz"]
        rows.append([r["dataset"], r["split"], f"{r['train_images']} / {r['val_images']}", px, metric,
                     ours + extra, f"{plain} ({r['plain_epochs']} ep)", tta, f"{r['fashionlab'] - r['plain']:+.4f}"])
    out = ["## Real-photo accuracy (same backbone, weights, image size, split and budget)", "",
           table(["data", "split", "train / val", "train / test px", "metric", "fashionlab default", "plain timm+torch loop",
                  "fashionlab + 10-crop TTA", "Δ"], rows), ""]
    out += [f"- `{r['command']}` (budget {r['budget_s']:.0f} s; took {r['fashionlab_seconds']} s)" for r in sec["rows"]]
    out += [f"- TTA: `{r['tta_command']}`" for r in sec["rows"] if r.get("tta_command")]
    out += ["- plain loop: `benchmarks/bench/plain.py` (`finetune_in_budget`), run by the same command "
            "on fashionlab's own train/val split and training image size, tested at that size as a plain user would"]
    out += [f"- the plain loop's model tested at fashionlab's test size instead ({r['test_imgsz']} px): "
            f"{r['plain_at_test_imgsz']:.4f} ({r['dataset']})" for r in sec["rows"] if "plain_at_test_imgsz" in r]
    out += [f"- {n}" for n in sec.get("notes", [])]
    return out + [""]


def _speed(sec: dict[str, Any]) -> list[str]:
    t = sec["training"]
    out = ["## Speed", "", "### Training images/s (steady-state epoch, same model, size, batch, workers, threads)", "",
           table(["image size", "images", "plain timm+torch", "fashionlab", "ratio"],
                 [[t["imgsz"], t["images"], t["plain_images_per_s"], t["fashionlab_images_per_s"], f"{t['ratio']}×"]]),
           ""]
    p = sec["pipeline"]
    rows = [[r["decoder"], r["decoded_size"], r["decode_images_per_s"], r["decode_augment_images_per_s"]]
            for r in p["rows"]]
    out += [f"### Data pipeline, one core (JPEGs from `{p['source']}`, augmented to {p['imgsz']} px)", "",
            table(["decoder", "decoded size", "decode only (img/s)", "decode + augment (img/s)"], rows), ""]
    i = sec["inference"]
    base = i["runtimes"]["pytorch eager"]["images_per_s"]
    rows = [[name, r["images_per_s"], r["ms_per_batch"], f"{r['images_per_s'] / base:.2f}×"]
            for name, r in i["runtimes"].items()]
    out += [f"### Inference ({i['model']} @ {i['imgsz']} px, batch {i['batch']}, {i['threads']} threads; "
            f"ONNX max |diff| {i['onnx_max_abs_diff']:.1e})", "",
            table(["runtime", "images/s", "ms/batch", "vs eager"], rows), ""]
    c = sec["feature_cache"]
    out += [f"### Head stage: cached frozen features vs the backbone every epoch ({c['images']} images, "
            f"{c['imgsz']} px, {c['head_epochs']} head epochs)", "",
            table(["feature extraction s", "head epochs on cache s", "cached total s", "uncached s (computed)",
                   "speed-up"],
                  [[c["extract_s"], c["head_epochs_s"], c["cached_s"], c["uncached_s"], f"{c['speedup']}×"]]),
            "", "Uncached = head epochs × the measured extraction pass + the head time (each epoch would re-run the "
            "frozen backbone).", ""]
    return out


def _memory(sec: dict[str, Any]) -> list[str]:
    rows = [[r["images"], r["imgsz"], r["peak_rss_mib"], r["seconds"], r["images_per_s"]] for r in sec["predict"]]
    out = ["## Memory (peak PSS of the whole process tree: data workers included, shared pages counted once)", "",
           table(["predict images", "px", "peak RSS MiB", "seconds", "images/s"], rows), ""]
    out += [f"- `{r['command']}`" for r in sec["predict"]]
    if sec.get("train"):
        out += ["", table(["training run (accuracy section)", "peak RSS MiB"],
                          [[r["dataset"], r["peak_rss_mib"]] for r in sec["train"]])]
    return out + [""]


def _scaling(sec: dict[str, Any]) -> list[str]:
    def rows(key: str) -> list[list[Any]]:
        return [[r["images"], r["imgsz"], r["epoch_s"], r["train_images_per_s"], r["peak_rss_mib"]] for r in sec[key]]

    headers = ["images", "px", "s / epoch", "train images/s", "peak RSS MiB"]
    return ["## Scaling (one fine-tune epoch; `fashionlab train classify --epochs 2 --set head_epochs=0`, "
            "second epoch timed)", "", table(headers, rows("by_count")), "", table(headers, rows("by_size")), "",
            f"![scaling]({sec['plot']})", ""]


def render(results: dict[str, Any]) -> str:
    lines = _header(results.get("meta", {}))
    for key, fn in (("accuracy", _accuracy), ("speed", _speed), ("memory", _memory), ("scaling", _scaling)):
        if key in results:
            section = fn(results[key])
            measured = results[key].get("measured")
            if measured and measured.get("commit") != results.get("meta", {}).get("commit"):  # a section run on its own
                section[1:1] = ["", f"_This section: {measured['date']}, commit {measured['commit']}._"]
            lines += section
    return "\n".join(lines) + "\n"
