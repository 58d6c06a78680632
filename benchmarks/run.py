"""The benchmark suite: real-photo accuracy (fashionlab vs a plain loop vs a frozen probe), speed, memory, scaling.

    python benchmarks/run.py            # the full suite (hours on 2 CPU cores) -> benchmarks/results.md + .json
    python benchmarks/run.py --quick    # small subsets, 30 s budgets, one seed (a few minutes; CI runs it)
    python benchmarks/run.py --sections accuracy --datasets trashnet --resume   # one part; resumes stored runs
    python benchmarks/run.py --readme   # also rewrite README.md's generated blocks from results.json
    python benchmarks/run.py --sections accuracy --datasets grocery-retrieval --rows fashionlab --resume \
        --search-again --work W     # a search-only change: index + search the stored runs' weights again

Accuracy: for each real set, three rows on the same held-out photos and budget — fashionlab's default
command, the plain loop of issue 16 at its best size, a frozen-feature probe at 224 px — each the mean ±
sd of 3 seeds (bench/accuracy.py). Real photos come from ``--data-root`` (default ../shared/data):
trashnet-112, clothing-256, clothing-attributes, and grocery-retrieval twice: street-to-shop search of
held-out products (bench/retrieval.py) and its tags.csv as a multi-label set (bench/styles.py).
Missing datasets are skipped with a note; speed/memory/scaling fall back to generated photos when
TrashNet is absent. Every figure is stored with the command that made it.
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
FULL = {"budget": 480.0, "seeds": "0,1,2", "throughput_images": 640, "throughput_imgsz": 112, "decode_files": 300, "decode_imgsz": 128,
        "infer_images": 320, "infer_imgsz": 224, "cache_images": 1000, "cache_imgsz": 160, "memory_counts": (1000, 10000),
        "scaling_counts": [250, 500, 1000], "scaling_sizes": [96, 128, 160], "scaling_base": (250, 112)}
QUICK = {"budget": 30.0, "seeds": "0", "throughput_images": 96, "throughput_imgsz": 64, "decode_files": 60, "decode_imgsz": 128,
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

    previous = results.get("accuracy", {})
    rows = {r["dataset"]: r for r in previous.get("rows", []) if previous.get("quick") == args.quick}
    all_runs: dict[str, list] = previous.get("runs", {}) if previous.get("quick") == args.quick else {}
    notes = []
    seeds = [int(s) for s in (args.seeds or params["seeds"]).split(",")]
    sizes = tuple(int(s) for s in args.plain_sizes.split(",")) if args.plain_sizes else None
    for name in args.datasets.split(","):
        if name not in DATASETS:
            raise SystemExit(f"unknown dataset '{name}' (datasets: {', '.join(DATASETS)})")
        folder = args.data_root / DATASETS[name].folder
        if not folder.is_dir():
            notes.append(f"{name}: {folder} not found, skipped")
            continue
        if not args.resume:
            all_runs[name] = []
        runs = all_runs.setdefault(name, [])

        def save_partial() -> None:
            results["accuracy"] = {"rows": list(rows.values()), "runs": all_runs, "notes": notes, "quick": args.quick}
            save()

        rows[name] = benchmark(name, folder, work / "accuracy", params["budget"], seeds, args.quick, runs,
                               save_partial, tuple(args.rows.split(",")), sizes, args.search_again)
        save_partial()
    m = results["meta"]["machine"]
    results["accuracy"] = {"rows": list(rows.values()), "runs": all_runs, "notes": notes, "quick": args.quick,
                           "machine": f"{m['cpu']}, {m['cores']} cores, GPU: {m['gpu']}, torch {m['torch']}"}


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
    train_rows = [{"dataset": name, "peak_rss_mib": max(r["peak_rss_mib"] for r in runs if r["row"] == "fashionlab")}
                  for name, runs in results.get("accuracy", {}).get("runs", {}).items()
                  if any(r["row"] == "fashionlab" for r in runs)]
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
    parser.add_argument("--datasets", default="trashnet,clothing-256,clothing-attributes,grocery-retrieval,grocery-tags")
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks",
                        help="where results.md/.json go (quick: results_quick.*)")
    parser.add_argument("--work", type=Path, default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("--readme", action="store_true",
                        help="also rewrite README.md's generated blocks (accuracy, and the other sections)")
    parser.add_argument("--seeds", default=None, help="accuracy: comma-separated seeds (default 0,1,2; quick: 0)")
    parser.add_argument("--rows", default="fashionlab,plain,probe", help="accuracy: which rows to run")
    parser.add_argument("--plain-sizes", default=None,
                        help="accuracy: the plain loop's sizes (default per dataset: 112,160 or 112,128,160; quick: 112)")
    parser.add_argument("--resume", action="store_true",
                        help="accuracy: keep the stored runs of these datasets (same budget) and run only the missing ones")
    parser.add_argument("--search-again", action="store_true",
                        help="accuracy, retrieval sets: index + search the stored fashionlab runs' weights again with "
                             "this code (training unchanged; the run keeps its train commit and records the search's)")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: rewrite results.md (and with --readme the README) from results.json")
    args = parser.parse_args()
    params = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "results_quick" if args.quick else "results"
    json_path, md_path = args.out / f"{stem}.json", args.out / f"{stem}.md"
    results: dict[str, Any] = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if args.render_only:
        md_path.write_text(render(results))
        if args.readme:
            update_readme(REPO / "README.md", results)
        print(f"wrote {md_path}" + (" and README.md" if args.readme else ""))
        return
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
        update_readme(REPO / "README.md", results)
    print(f"wrote {md_path} and {json_path}")


def update_readme(readme: Path, results: dict[str, Any]) -> None:
    """Rewrite the README's generated blocks: the accuracy table and prose, and the other sections."""
    from bench.render import accuracy_lines, render

    text = readme.read_text()
    blocks = {("<!-- accuracy:begin -->", "<!-- accuracy:end -->"):
              "\n".join(accuracy_lines(results["accuracy"])[2:]) if "accuracy" in results else
              "_Not measured yet: `python benchmarks/run.py --sections accuracy --readme`._",
              ("<!-- benchmarks:start -->", "<!-- benchmarks:end -->"):
              render({k: v for k, v in results.items() if k != "accuracy"}).split("\n", 1)[1]}
    for (start, end), markdown in blocks.items():
        if start not in text or end not in text:
            raise SystemExit(f"{readme}: no '{start}' ... '{end}' block to fill")
        body = markdown.replace("\n## ", "\n#### ").replace("\n### ", "\n##### ").replace("](scaling", "](benchmarks/scaling")
        head, rest = text.split(start, 1)
        text = head + start + "\n" + body.strip() + "\n" + end + rest.split(end, 1)[1]
    readme.write_text(text)


if __name__ == "__main__":
    main()
