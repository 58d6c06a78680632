"""results.json -> results.md: a table per section, with the machine, date, commit and commands."""
from __future__ import annotations

import re
from typing import Any

from .common import table

# results.json keeps each command exactly as it ran; the rendered tables show it without the machine's own
# folders: the interpreter as `python`, the script relative to the repository, run folders under $WORK
_PORTABLE = ((re.compile(r"\S*/bin/python[\d.]*(?=\s)"), "python"),
             (re.compile(r"\S*/(benchmarks/\S+\.py)"), r"\1"),
             (re.compile(r"\S*/shared/data/"), "../shared/data/"),
             (re.compile(r"(--work )\S+"), r"\1$WORK"),
             (re.compile(r"(?<!\S)/\S*?/((?:accuracy|speed|memory|scaling)/)"), r"$WORK/\1"))


def portable(command: str) -> str:
    """The command as another machine would type it (see _PORTABLE)."""
    for pattern, replacement in _PORTABLE:
        command = pattern.sub(replacement, command)
    return command


def _header(meta: dict[str, Any]) -> list[str]:
    m = meta.get("machine", {})
    mode = "QUICK mode (small subsets, 30 s budgets: a smoke run, not evidence)" if meta.get("quick") else "full suite"
    return [f"# fashionlab benchmark results ({mode})", "",
            f"- machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB RAM, GPU: {m.get('gpu')}; "
            f"torch {m.get('torch')} ({m.get('torch_threads')} threads), Python {m.get('python')}",
            f"- date: {meta.get('date')}; commit: {meta.get('commit')}", f"- command: `{portable(str(meta.get('command')))}`", ""]


def _pm(summary: dict[str, Any] | None, signed: bool = False) -> str:
    if not summary:
        return "—"
    mean = f"{summary['mean']:+.4f}" if signed else f"{summary['mean']:.4f}"
    return mean + (f" ± {summary['sd']:.4f}" if summary.get("sd") is not None else "")


def _sizes(values: list[Any]) -> str:
    distinct = sorted({v for v in values if v is not None})
    return "/".join(str(v) for v in distinct) if distinct else "?"


def _verdicts(r: dict[str, Any]) -> list[tuple[str, bool]]:
    """(what, met) for each of issue 16's conditions that the row's figures allow checking."""
    ours = r.get("fashionlab")
    if not ours:
        return []
    out = []
    if r.get("target") is not None:
        out.append((f"mean ≥ target {r['target']}", ours["mean"] >= r["target"]))
    if r.get("delta_plain"):
        d = r["delta_plain"]
        out.append(("≥ plain loop + 0.02", d["mean"] >= 0.02))
        if d.get("sd") is not None:
            out.append(("margin over the plain loop larger than its sd", d["mean"] > d["sd"]))
    if r.get("delta_probe"):
        d = r["delta_probe"]
        margin = r.get("probe_margin", 0.0)
        out.append((f"≥ frozen probe + {margin:.2f}" if margin else "≥ frozen probe", d["mean"] >= margin))
        if d.get("sd") is not None:
            out.append(("margin over the probe larger than its sd", d["mean"] > d["sd"]))
    return out


def _at(row: dict[str, Any], before: str = "; ", after: str = "") -> str:
    """'; runs of commit X' when the row's runs say which commit measured them (older results do not)."""
    commits = [c for c in row.get("commits", []) if c != "?"]
    return f"{before}runs of commit {', '.join(commits)}{after}" if commits else ""


def _rarest(runs: list[dict[str, Any]]) -> str:
    """'tag (training photos) F2 fashionlab / probe; …' for the rarest tags the multi-label runs stored."""
    by_tag: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for tag, got in (run.get("rarest") or {}).items():
            cell = by_tag.setdefault(tag, {"photos": [], "fashionlab": [], "probe": []})
            cell["photos"].append(got["train_images"])
            cell.setdefault(run["row"], []).append(got["f2"])

    def mean(values: list[float]) -> str:
        return f"{sum(values) / len(values):.3f}" if values else "—"

    cells = sorted(by_tag.items(), key=lambda kv: sum(kv[1]["photos"]) / len(kv[1]["photos"]))
    return "; ".join(f"{tag} ({round(sum(c['photos']) / len(c['photos']))}) {mean(c['fashionlab'])} / {mean(c['probe'])}"
                     for tag, c in cells)


def accuracy_lines(sec: dict[str, Any]) -> list[str]:
    """The accuracy table and its prose, generated from results.json alone (README block and results.md)."""
    rows, prose = [], []
    for r in sec.get("rows", []):
        ours, plain, probe = r.get("fashionlab"), r.get("plain"), r.get("probe")
        ours_cell = (f"{_pm(ours)} ({_sizes(ours['imgsz'])} / {_sizes(ours['test_imgsz'])} px)" if ours else "—")
        plain_cell = (f"{_pm(plain)} ({plain['imgsz']} px, {_sizes(plain['epochs'])} ep)" if plain else "—")
        probe_cell = (f"{_pm(probe)} ({_sizes([round(s) for s in probe['seconds']])} s)" if probe else "—")
        verdicts = _verdicts(r)
        met = "—" if r.get("target") is None else f"{r['target']}: " + ("met" if ours and ours["mean"] >= r["target"] else "not met")
        rows.append([r["dataset"], f"{r.get('n_train', '?')} / {r.get('n_test', '?')}", r["metric"],
                     ours_cell, plain_cell, probe_cell, _pm(r.get("delta_plain"), True),
                     _pm(r.get("delta_probe"), True), met])
        seeds = ", ".join(str(s) for s in r["seeds"])
        text = [f"- **{r['dataset']}** ({r['protocol']}; {r.get('n_train', '?')} training / {r.get('n_test', '?')} "
                f"test photos; seeds {seeds}; budget {r['budget_s']:.0f} s):"]
        if ours:
            text.append(f"fashionlab {_pm(ours)} (per seed {', '.join(f'{v:.4f}' for v in ours['values'])}"
                        f"{_at(ours)}).")
        if plain:
            others = "; ".join(f"{s} px {_pm(v)}" for s, v in plain["by_size"].items() if int(s) != plain["imgsz"])
            text.append(f"Plain loop at its best size, {plain['imgsz']} px: {_pm(plain)}"
                        + (f" (other sizes: {others})" if others else "") + f"{_at(plain, '; ')}.")
        if probe:
            text.append(f"Frozen probe at 224 px: {_pm(probe)}{_at(probe, ' (', ')')}.")
        for base, label in (("plain", "plain loop"), ("probe", "probe")):
            if r.get(f"delta_{base}"):
                text.append(f"Δ vs the {label} {_pm(r[f'delta_{base}'], True)} (mean ± sd of the per-seed differences).")
        rarest = _rarest(sec.get("runs", {}).get(r["dataset"], []))
        if rarest:
            text.append("Rarest tags in each seed's training split (training photos; per-label F2 of fashionlab / "
                        f"the probe, mean over the seeds whose split has the tag among its five rarest): {rarest}.")
        if verdicts:
            text.append("Conditions: " + "; ".join(f"{what}: {'yes' if ok else 'NO'}" for what, ok in verdicts) + ".")
        prose.append(" ".join(text))
    checked = [(r["dataset"], _verdicts(r)) for r in sec.get("rows", []) if _verdicts(r)]
    wins = [name for name, v in checked if all(ok for _, ok in v)]
    quick = sec.get("quick")
    out = ["## Real-photo accuracy: fashionlab default vs a plain fine-tune loop vs a frozen probe", ""]
    measured = sec.get("measured")
    if measured:
        out += [f"_Measured {measured['date']}, commit {measured['commit']}"
                + (f"; {sec['machine']}" if sec.get("machine") else "") + "._", ""]
    if quick:
        out += ["_QUICK mode: tiny subsets, short budgets, one seed — a smoke run of the harness, not evidence._", ""]
    out += [table(["data", "train / test photos", "metric", "fashionlab default (train / test px)",
                   "plain loop (best size)", "frozen probe 224 px (s)", "Δ vs plain", "Δ vs probe", "target"], rows), ""]
    out += ["Each cell: mean ± sd over the seeds (sd with ddof 1); Δ: mean ± sd of the per-seed differences "
            "(each seed's rows share the same test photos).", ""]
    out += prose
    if checked:
        out += ["", f"All of issue 16's conditions hold on {len(wins)} of {len(checked)} datasets"
                + (f" ({', '.join(wins)})" if wins else "") + "."]
    with_cmds = [r for r in sec.get("rows", []) if r.get("commands")]
    if with_cmds:
        out += ["", "Commands (the first seed's; the other seeds differ only in the seed and the split folder; "
                "$WORK is run.py's `--work` folder, results.json keeps the exact paths):", ""]
        out += [f"- {r['dataset']}, {row}: " + " then ".join(f"`{portable(c)}`" for c in cmds)
                for r in with_cmds for row, cmds in r["commands"].items()]
    out += [f"- {n}" for n in sec.get("notes", [])]
    return out + [""]


def _speed(sec: dict[str, Any]) -> list[str]:
    t = sec["training"]
    plain = t.get("plain", "torchvision transforms on PIL images in 2 loader processes")
    out = ["## Speed", "", f"### Training images/s (steady state, same model, size, batch, threads; plain loop: {plain})", "",
           table(["image size", "images", "plain loop", "fashionlab", "ratio"],
                 [[t["imgsz"], t["images"], t["plain_images_per_s"], t["fashionlab_images_per_s"], f"{t['ratio']}×"]]),
           ""]
    p = sec["pipeline"]
    rows = [[r["decoder"], r["decoded_size"], r["decode_images_per_s"], r["decode_augment_images_per_s"]]
            for r in p["rows"]]
    out += [f"### Data pipeline, one core (JPEGs from `{portable(str(p['source']))}`, augmented to {p['imgsz']} px)", "",
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
    out += [f"- `{portable(r['command'])}`" for r in sec["predict"]]
    if sec.get("train"):
        out += ["", table(["training run (accuracy section)", "peak RSS MiB"],
                          [[r["dataset"], r["peak_rss_mib"]] for r in sec["train"]])]
    return out + [""]


def _scaling(sec: dict[str, Any]) -> list[str]:
    def rows(key: str) -> list[list[Any]]:
        return [[r["images"], r["imgsz"], r["epoch_s"], r["train_images_per_s"], r["peak_rss_mib"]] for r in sec[key]]

    headers = ["images", "px", "s / epoch", "train images/s", "peak RSS MiB"]
    return ["## Scaling (one fine-tune epoch; `fashionlab train classify --epochs 2 --set first_stage=none`, "
            "second epoch timed)", "", table(headers, rows("by_count")), "", table(headers, rows("by_size")), "",
            f"![scaling]({sec['plot']})", ""]


def render(results: dict[str, Any]) -> str:
    lines = _header(results.get("meta", {}))
    for key, fn in (("accuracy", accuracy_lines), ("speed", _speed), ("memory", _memory), ("scaling", _scaling)):
        if key in results:
            section = fn(results[key])
            measured = results[key].get("measured")
            if measured and measured.get("commit") != results.get("meta", {}).get("commit"):  # a section run on its own
                section[1:1] = ["", f"_This section: {measured['date']}, commit {measured['commit']}._"]
            lines += section
    return "\n".join(lines) + "\n"
