"""The benchmark suite: real-photo accuracy vs a plain timm+torch loop, speed, memory and scaling.

    python benchmarks/run.py            # the full suite (~1 h on 2 CPU cores) -> benchmarks/results.md + .json
    python benchmarks/run.py --quick    # small subsets and 30 s budgets (< 10 min; CI runs it)
    python benchmarks/run.py --sections accuracy --datasets trashnet   # one part; other sections' results are kept

Real photos come from ``--data-root`` (default ../shared/data): trashnet-112, clothing-256 and
clothing-attributes. Missing datasets are skipped with a note; speed/memory/scaling fall back to
generated photos when TrashNet is absent. Every figure is stored with the command that made it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO, commit, machine
from bench.render import render

SECTIONS = ("accuracy", "speed", "memory", "scaling")
FULL = {"budget": 480.0, "throughput_images": 640, "throughput_imgsz": 112, "decode_files": 300, "decode_imgsz": 128,
        "infer_images": 320, "infer_imgsz": 224, "cache_images": 1000, "cache_imgsz": 160, "memory_counts": (1000, 10000),
        "scaling_counts": [250, 500, 1000], "scaling_sizes": [96, 128, 160], "scaling_base": (250, 112)}
QUICK = {"budget": 30.0, "throughput_images": 96, "throughput_imgsz": 64, "decode_files": 60, "decode_imgsz": 128,
         "infer_images": 32, "infer_imgsz": 112, "cache_images": 96, "cache_imgsz": 96, "memory_counts": (200, 2000),
         "scaling_counts": [32, 64, 128], "scaling_sizes": [48, 64, 96], "scaling_base": (64, 64)}


def _photos(data_root: Path, work: Path) -> Path:
    """TrashNet when it is there, else generated class folders (so the suite runs anywhere)."""
    trash = data_root / "trashnet-112"
    if trash.is_dir():
        return trash
    from bench.memory import make_photos

    return work / "generated" if (work / "generated").is_dir() else make_photos(work / "generated", 1200, 112, 6)


def accuracy(args, params, work: Path, results: dict[str, Any], save) -> None:
    from bench.accuracy import DATASETS, benchmark

    rows = {r["dataset"]: r for r in results.get("accuracy", {}).get("rows", [])}
    notes = []
    for name in args.datasets.split(","):
        folder = args.data_root / DATASETS[name][1]
        if not folder.is_dir():
            notes.append(f"{name}: {folder} not found, skipped")
            continue
        rows[name] = benchmark(name, folder, work / "accuracy" / name, params["budget"], args.quick)
        results["accuracy"] = {"rows": list(rows.values()), "notes": notes, "quick": args.quick}
        save()
    results["accuracy"] = {"rows": list(rows.values()), "notes": notes, "quick": args.quick}


def speed(args, params, work: Path, results: dict[str, Any], save) -> None:
    import sys as _sys

    from bench.speed import data_pipeline, feature_cache, training_throughput
    from fashionlab.data.images import list_images

    _sys.path.insert(0, str(REPO / "benchmarks"))
    from export_speed import measure

    photos = _photos(args.data_root, work)
    decode_root = args.data_root / "clothing-256" / "train"
    decode_files = list_images(decode_root if decode_root.is_dir() else photos)[: params["decode_files"]]
    out: dict[str, Any] = {
        "training": training_throughput(photos, params["throughput_imgsz"], params["throughput_images"]),
        "pipeline": {"source": str(decode_files[0].parent.parent), "imgsz": params["decode_imgsz"],
                     "rows": data_pipeline(decode_files, params["decode_imgsz"])},
        "inference": measure("efficientnet_lite0", params["infer_imgsz"], 16, params["infer_images"], 2),
        "feature_cache": feature_cache(photos, params["cache_imgsz"], params["cache_images"]),
    }
    results["speed"] = out
    save()


def memory(args, params, work: Path, results: dict[str, Any], save) -> None:
    from bench.memory import predict_memory

    results["memory"] = {"predict": predict_memory(work / "memory", params["memory_counts"])}
    train_rows = [{"dataset": r["dataset"], "peak_rss_mib": r.get("fashionlab_peak_rss_mib")}
                  for r in results.get("accuracy", {}).get("rows", []) if r.get("fashionlab_peak_rss_mib")]
    results["memory"]["train"] = train_rows
    save()


def scaling(args, params, work: Path, results: dict[str, Any], save) -> None:
    from bench.scaling import scaling as run_scaling

    count, size = params["scaling_base"]
    out = run_scaling(_photos(args.data_root, work), work / "scaling", params["scaling_counts"], params["scaling_sizes"],
                      count, size)
    plot = args.out / ("scaling_quick.png" if args.quick else "scaling.png")
    plot.write_bytes(Path(out["plot"]).read_bytes())
    out["plot"] = plot.name
    results["scaling"] = out
    save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small subsets, 30 s budgets (< 10 min)")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--datasets", default="trashnet,clothing-256,clothing-attributes")
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks",
                        help="where results.md/.json go (quick: results_quick.*)")
    parser.add_argument("--work", type=Path, default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("--readme", action="store_true", help="also copy the tables into README.md's Results block")
    args = parser.parse_args()
    params = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "results_quick" if args.quick else "results"
    json_path, md_path = args.out / f"{stem}.json", args.out / f"{stem}.md"
    results: dict[str, Any] = json.loads(json_path.read_text()) if json_path.is_file() else {}
    results["meta"] = {"machine": machine(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       "commit": commit(), "quick": args.quick,
                       "command": shlex.join([Path(sys.executable).name, *sys.argv])}

    def save() -> None:
        for path, text in ((json_path, json.dumps(results, indent=2) + "\n"), (md_path, render(results))):
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for section in args.sections.split(","):
            if section not in SECTIONS:
                parser.error(f"unknown section '{section}' (sections: {', '.join(SECTIONS)})")
            print(f"== {section}", flush=True)
            globals()[section](args, params, work, results, save)
            results[section]["measured"] = {"date": results["meta"]["date"], "commit": results["meta"]["commit"]}
    save()
    if args.readme:
        update_readme(REPO / "README.md", render(results))
    print(f"wrote {md_path} and {json_path}")


def update_readme(readme: Path, markdown: str) -> None:
    """Replace the block between the benchmark markers in the README with the rendered tables."""
    start, end = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{readme}: no '{start}' ... '{end}' block to fill")
    body = markdown.split("\n", 1)[1].replace("\n## ", "\n#### ").replace("\n### ", "\n##### ").replace("](scaling", "](benchmarks/scaling")
    head, rest = text.split(start, 1)
    readme.write_text(head + start + "\n" + body.strip() + "\n" + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    main()
