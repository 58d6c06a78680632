"""``fashionlab VERB TASK [CONFIG.yaml] [--options]`` — a thin Typer layer over ``fashionlab.api``."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__, api
from .config import parse_set
from .errors import FashionlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and ship fashion image-recognition models.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: the embedded synthetic sets; convert public ones.")
app.add_typer(data_app, name="data")
console = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("fashionlab").setLevel(logging.INFO)
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="More log output.")) -> None:
    _setup_logging(verbose)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


@app.command()
def train(
    task: str = typer.Argument(..., help="attributes | classify | styles | keypoints | retrieval"),
    config: Optional[Path] = typer.Argument(None, help="YAML config; options below override it."),
    data: Optional[str] = typer.Option(None, help="Training data (folder or label file)."),
    out: Optional[str] = typer.Option(None, help="Run folder."),
    model: Optional[str] = typer.Option(None, help="timm model name."),
    pretrained: Optional[str] = typer.Option(None, help="auto | offline | timm | none | PATH."),
    imgsz: Optional[int] = typer.Option(None, help="Image size (pixels)."),
    epochs: Optional[int] = typer.Option(None, help="Fine-tune epochs (cap when --time-budget is set)."),
    batch: Optional[int] = typer.Option(None, help="Batch size."),
    lr: Optional[float] = typer.Option(None, help="Learning rate of the head; the backbone gets lr*backbone_lr_mult."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Wall-clock seconds for the run."),
    val_data: Optional[str] = typer.Option(None, "--val-data", help="Separate validation data."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N."),
    devices: Optional[int] = typer.Option(None, help="Data-parallel processes per node (DDP), e.g. one per GPU."),
    nodes: Optional[int] = typer.Option(None, help="Machines (DDP); set NODE_RANK, MASTER_ADDR, MASTER_PORT on each."),
    workers: Optional[int] = typer.Option(None, help="Data-loading processes."),
    seed: Optional[int] = typer.Option(None),
    folds: Optional[int] = typer.Option(None, help="K-fold: K models + out-of-fold probabilities (RUN/oof.csv)."),
    test: Optional[str] = typer.Option(None, help="K-fold: images to predict with every fold model (RUN/test.csv)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images (counted, with a warning)."),
    resume: Optional[Path] = typer.Option(None, help="Continue a stopped run from its folder."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Replace a run already in --out (default: refuse)."),
    set_: list[str] = typer.Option([], "--set", help="Any config option: --set schedule=cosine (repeatable)."),
) -> None:
    """Train a model; the best checkpoint by the task's metric goes to RUN/weights/best.pt."""
    overrides = dict(data=data, out=out, model=model, pretrained=pretrained, imgsz=imgsz, epochs=epochs, batch=batch,
                     lr=lr, time_budget=time_budget, val_data=val_data, device=device, workers=workers, seed=seed,
                     devices=devices, nodes=nodes, folds=folds, test=test,
                     skip_bad=skip_bad or None, exist_ok=exist_ok or None)
    overrides.update(parse_set(set_))  # --set wins over the options (and no TypeError when it names one)
    from . import STARTED

    api.count_budget_from(STARTED)  # --time-budget bounds the whole command, start-up included
    results = api.train(task, config, resume=resume, **overrides)
    for result in results if isinstance(results, list) else [results]:
        if getattr(result, "rank", 0):  # data-parallel: rank 0 reports
            continue
        metric = result.metrics.get(result.metrics.get("metric", ""), None)
        console.print(f"[green]done[/]: best weights {result.best}; val {result.metrics.get('metric')} = {metric}")
        console.print(f"run folder: {result.run}")


@app.command("lr-find")
def lr_find(
    task: str = typer.Argument(...),
    config: Optional[Path] = typer.Argument(None),
    data: Optional[str] = typer.Option(None),
    out: Path = typer.Option(Path("lr_find.png"), help="Plot of loss vs learning rate (JSON beside it)."),
    model: Optional[str] = typer.Option(None),
    imgsz: Optional[int] = typer.Option(None),
    batch: Optional[int] = typer.Option(None),
    steps: int = typer.Option(100, help="Steps of the range test."),
    set_: list[str] = typer.Option([], "--set"),
) -> None:
    """Learning-rate range test: loss vs LR plot and the steepest-descent suggestion."""
    result = api.lr_find(task, config, out=out, steps=steps, data=data, model=model, imgsz=imgsz, batch=batch,
                         **parse_set(set_))
    console.print(f"suggested lr {result['suggested_lr']:.2e}; plot {result['plot']}")


@app.command()
def predict(
    task: str = typer.Argument(...),
    weights: list[Path] = typer.Option(..., help="best.pt or run folder; repeat for an ensemble."),
    source: Path = typer.Option(..., help="Image folder, image, or list file."),
    out: Path = typer.Option(Path("predictions.csv"), help="Output CSV."),
    tta: Optional[str] = typer.Option(None, help="none | flip | 5crop | 10crop (keypoints, retrieval: none | flip); "
                                                 "default flip."),
    combine: Optional[str] = typer.Option(None, help="Several weights: mean | vote | confidence (classifiers); "
                                                     "keypoints mean; retrieval concat."),
    batch: int = typer.Option(64),
    workers: int = typer.Option(2),
    device: str = typer.Option("auto"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave unreadable images out (counted, with a warning)."),
) -> None:
    """Predict images; classify writes image,label,score, attributes the FashionAI submission format."""
    path = api.predict(task, list(weights), source, out, tta=tta, batch=batch, workers=workers, device=device,
                       combine=combine, skip_bad=skip_bad)
    console.print(f"wrote {path}")


@app.command()
def submit(
    task: str = typer.Argument(...),
    weights: list[Path] = typer.Option(..., help="best.pt or run folder; repeat for an ensemble."),
    source: Path = typer.Option(..., help="Test release root or question/label CSV."),
    out: Path = typer.Option(Path("submission.csv")),
    tta: Optional[str] = typer.Option(None, help="Default: the competition's (10crop; keypoints, retrieval: flip)."),
    combine: Optional[str] = typer.Option(None, help="Several weights: mean | vote | confidence (classifiers)."),
    batch: int = typer.Option(64),
    workers: int = typer.Option(2),
    device: str = typer.Option("auto"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave unreadable images out (counted, with a warning)."),
) -> None:
    """Write a competition submission (predict with the competition's TTA default)."""
    path = api.submit(task, list(weights), source, out, tta=tta, batch=batch, workers=workers, device=device,
                      combine=combine, skip_bad=skip_bad)
    console.print(f"wrote submission {path}")


@app.command()
def evaluate(
    task: str = typer.Argument(...),
    pred: Path = typer.Option(..., help="Predictions / submission file."),
    truth: Path = typer.Option(..., help="Ground-truth file."),
    thresholds: Optional[Path] = typer.Option(None, help="styles: per-label thresholds JSON."),
    cost: Optional[Path] = typer.Option(None, help="classify: severity matrix CSV -> expected_cost."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Score predictions with the competition's own metric."""
    kwargs: dict = {"thresholds_path": thresholds} if thresholds is not None else {}
    if cost is not None:
        kwargs["cost_path"] = cost
    scores = api.evaluate(task, pred, truth, **kwargs)
    if as_json:
        print(json.dumps(scores))
        return
    table = Table(title=f"{task} evaluation")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in scores.items():
        if isinstance(value, (int, float)):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
        elif isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
            for sub, v in value.items():
                table.add_row(f"{key}.{sub}", f"{v:.4f}")
    Console().print(table)


@app.command()
def index(
    task: str = typer.Argument(..., help="retrieval"),
    weights: list[Path] = typer.Option(..., help="Embedding model(s); several are fused."),
    gallery: Path = typer.Option(..., help="Items CSV (its shop rows) or an image folder."),
    out: Path = typer.Option(..., help="Index folder."),
    kind: str = typer.Option("flat", help="flat (exact inner product) | ivf | hnsw"),
    fusion: str = typer.Option("concat", help="Several models: concat | mean of normalised embeddings."),
    tta: str = typer.Option("flip", help="none | flip"),
    device: str = typer.Option("auto"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave unreadable images out (counted, with a warning)."),
) -> None:
    """Embed a gallery and build a FAISS index (ids and categories stored beside it)."""
    path = api.index(task, weights if len(weights) > 1 else weights[0], gallery, out, kind=kind, fusion=fusion,
                     tta=tta, device=device, skip_bad=skip_bad)
    console.print(f"wrote index {path}")


@app.command()
def search(
    task: str = typer.Argument(..., help="retrieval"),
    index_dir: Path = typer.Option(..., "--index", help="Index folder from `fashionlab index`."),
    query: Path = typer.Option(..., help="An image, a folder, or an items CSV (its consumer rows)."),
    top: int = typer.Option(10),
    out: Optional[Path] = typer.Option(None, help="Write the ranking CSV query_id,gallery_ids."),
    category: Optional[str] = typer.Option(None, help="Search one category only; 'auto' = predicted."),
    device: str = typer.Option("auto"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave unreadable images out (counted, with a warning)."),
    rerank: str = typer.Option("qe", help="qe (expand each query with its nearest queries of this batch) | "
                                          "k-reciprocal | none"),
) -> None:
    """Rank the gallery for each query image."""
    results = api.search(task, index_dir, query, top=top, out=out, category=category, device=device,
                         skip_bad=skip_bad, rerank=rerank)
    if out is not None:
        console.print(f"wrote {out} ({len(results)} queries)")
        return
    for query_id, ids, scores in results:
        print(query_id + "\t" + " ".join(f"{i}:{s:.3f}" for i, s in zip(ids, scores)))


@app.command()
def thresholds(
    task: str = typer.Argument(..., help="styles"),
    pred: Path = typer.Option(..., help="Validation/OOF PROBS CSV image,<labels>."),
    truth: Path = typer.Option(..., help="Label CSV image,<labels> of 0/1."),
    out: Path = typer.Option(Path("thresholds.json")),
    method: str = typer.Option("greedy", help="greedy | lbfgs | none"),
) -> None:
    """Tune per-label thresholds that maximise sample F2 (styles); predict/evaluate read the JSON."""
    result = api.thresholds(task, pred, truth, out, method)
    console.print(f"F2 {result['f2_before']:.4f} at 0.5 -> {result['f2_after']:.4f} tuned on {result['images']} "
                  f"images (cross-fit, tuned on one half and scored on the other: {result['f2_crossfit']:.4f}); "
                  f"wrote {out}")


@app.command()
def ensemble(
    task: str = typer.Argument(..., help="styles | classify"),
    pred: list[Path] = typer.Option(..., help="OOF/val probability CSV of one model; repeat."),
    out: Path = typer.Option(Path("ensemble.csv")),
    method: str = typer.Option("mean", help="mean | weighted | vote | top_n | stack"),
    truth: Optional[Path] = typer.Option(None, help="Labels of the OOF rows (scores, top_n, stack)."),
    weight: list[float] = typer.Option([], "--weight", help="One per --pred (weighted)."),
    test: list[Path] = typer.Option([], "--test", help="Test probabilities, same model order."),
    test_out: Optional[Path] = typer.Option(None, "--test-out"),
    thresholds_json: list[Path] = typer.Option([], "--thresholds", help="Per-model JSON for vote."),
    corr_threshold: float = typer.Option(0.9, "--corr-threshold"),
    top_n: int = typer.Option(2, "--top-n"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Combine several runs' probability CSVs; prunes models correlated above --corr-threshold."""
    result = api.ensemble(task, pred, out, method, truth, weight or None, test or None, test_out, corr_threshold,
                          top_n, thresholds_json or None)
    if as_json:
        print(json.dumps(result))
        return
    console.print(f"kept {len(result['kept'])}/{len(result['models'])} models; wrote {out}")
    for how, value in result.get("scores", {}).items():
        console.print(f"  {how:<9} {result['metric']} = {value:.4f}")


preview_app = typer.Typer(no_args_is_help=True, help="Visual checks of augmentations.")
app.add_typer(preview_app, name="preview")


@preview_app.command("recolour")
def preview_recolour(
    source: Path = typer.Option(..., help="Image folder or image."),
    out: Path = typer.Option(Path("recolour.png")),
    masks: Optional[Path] = typer.Option(None, help="Folder of garment masks <stem>.png (else GrabCut)."),
    n: int = typer.Option(8, help="Images in the grid."),
    variants: int = typer.Option(4),
    seed: int = typer.Option(0),
) -> None:
    """PNG grid: original, garment mask, recoloured variants."""
    console.print(f"wrote {api.preview_recolour(source, out, variants, masks, seed, max_images=n)}")


@app.command()
def report(run: Path = typer.Argument(..., help="Run folder.")) -> None:
    """Write RUN/report.html: config, data, curves, metrics and plots in one file."""
    console.print(f"wrote {api.report(run)}")


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo")), time_budget: float = typer.Option(150.0, "--time-budget")) -> None:
    """The main job, offline: synthetic FashionAI attributes -> train -> evaluate -> submission -> report."""
    console.print("[bold]fashionlab demo[/]: synthetic FashionAI attributes (3 tasks), efficientnet_lite0 "
                  "with offline ImageNet weights")
    summary = api.demo(out, time_budget=time_budget)
    for key in ("data", "run", "weights", "submission", "report"):
        console.print(f"  {key:<11} {summary[key]}")
    console.print(f"  validation  {json.dumps(summary['val'])}")
    console.print(f"  took        {summary['seconds']} s")


@data_app.command("synth")
def data_synth(
    task: str = typer.Argument(..., help="attributes | styles | retrieval | keypoints"),
    out: Path = typer.Option(..., help="Output folder."),
    n: Optional[int] = typer.Option(None, help="Images (per task for attributes, items for retrieval)."),
    size: Optional[int] = typer.Option(None, help="Image size in pixels."),
    seed: int = typer.Option(0),
) -> None:
    """Generate an embedded synthetic dataset in the competition's own layout."""
    kwargs = {k: v for k, v in {"size": size, "seed": seed}.items() if v is not None}
    console.print(f"wrote {api.synth(task, out, n=n, **kwargs)}")


@data_app.command("convert")
def data_convert(
    source: Path = typer.Argument(..., help="The dataset's folder or annotation file."),
    from_: str = typer.Option(..., "--from", help="deepfashion2 | deepfashion-landmark | deepfashion-inshop | "
                              "deepfashion-c2s | deepfashion-attributes | fashionpedia | coco-keypoints"),
    to: str = typer.Option(..., help="keypoints | retrieval | styles | attributes"),
    out: Path = typer.Option(..., help="Output folder."),
    split: Optional[str] = typer.Option(None, help="Rows of these splits (comma list) or all; names per source."),
    images: Optional[Path] = typer.Option(None, help="Folder the image names are relative to (default per source)."),
    mapping: Optional[Path] = typer.Option(None, help="YAML landmark mapping (coco-keypoints; overrides for "
                                           "deepfashion2)."),
    copy_images: bool = typer.Option(False, "--copy-images", help="Copy images instead of symlinking them."),
    crop: Optional[bool] = typer.Option(None, "--crop/--no-crop", help="One crop per garment box (deepfashion2, "
                                        "coco-keypoints; default: on for deepfashion2 retrieval)."),
    crop_margin: Optional[float] = typer.Option(None, "--crop-margin", help="Crop margin, fraction of the box."),
    groups: Optional[str] = typer.Option(None, help="Attribute groups to keep (comma list)."),
    zero_means: Optional[str] = typer.Option(None, "--zero-means", help="deepfashion-attributes: 0 is unknown "
                                             "(default) or negative."),
    upper: Optional[str] = typer.Option(None, help="deepfashion-landmark upper-body rows: blouse | outwear."),
    lower: Optional[str] = typer.Option(None, help="deepfashion-landmark lower-body rows: skirt | trousers."),
    limit: Optional[int] = typer.Option(None, help="Convert only the first N records (a quick look)."),
) -> None:
    """Convert a public fashion dataset to a task format; prints and writes OUT/convert_summary.json."""
    summary = api.convert(source, from_, to, out, split=split, images=images, mapping=mapping,
                          copy_images=copy_images or None, crop=crop, crop_margin=crop_margin, groups=groups,
                          zero_means=zero_means, upper=upper, lower=lower, limit=limit)
    for line in summary.lines():
        console.print(line, highlight=False, soft_wrap=True)


from . import cli_ship  # noqa: E402 - serve/export live in their own module

cli_ship.register(app, console)
from . import cli_sweep  # noqa: E402

cli_sweep.register(app, console)


def run() -> None:
    """Entry point: user errors become one red line and exit code 2, never a stack trace."""
    try:
        app()
    except FashionlabError as err:
        code = getattr(err, "exit_code", 2)  # a run stopped by a signal: 130 (Ctrl-C) / 143 (SIGTERM)
        console.print(f"[{'yellow' if code != 2 else 'red'}]{'stopped' if code != 2 else 'error'}[/]: {err}",
                      highlight=False, soft_wrap=True)
        sys.exit(code)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: weights saved so far are in RUN/weights (continue with --resume RUN)")
        sys.exit(130)


if __name__ == "__main__":
    run()
