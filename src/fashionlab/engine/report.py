"""One self-contained HTML report per run folder (inline CSS, PNGs as base64 data URIs)."""
from __future__ import annotations

import base64
import csv
import json
import math
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import yaml

from ..errors import FashionlabError
from ..io import write_text

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.05em;margin-bottom:.3em}.meta{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:.8em}
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:8em;background:#fafafa}
.card .k{color:#666;font-size:.8em}.card .v{font-size:1.4em;font-weight:600}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#666;font-size:.85em}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.8em;border:1px solid #e3e3e3}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return f"<td>{_kv_table(value)}</td>"
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return f"<td>{_rows_table(value)}</td>"
        return f"<td>{escape(', '.join(_fmt(v) for v in value))}</td>"
    cls = ' class="num"' if _is_num(value) else ""
    return f"<td{cls}>{escape(_fmt(value))}</td>"


def _kv_table(mapping: dict, header: tuple[str, str] | None = None) -> str:
    head = f"<tr><th>{escape(header[0])}</th><th>{escape(header[1])}</th></tr>" if header else ""
    body = "".join(f"<tr><th>{escape(str(k))}</th>{_cell(v)}</tr>" for k, v in mapping.items())
    return f"<table>{head}{body}</table>"


def _rows_table(rows: list[dict], columns: list[str] | None = None) -> str:
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c, "")) for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _generic(obj: Any) -> str:
    """Scalars in one two-column table, then one sub-table per nested dict/list."""
    if not isinstance(obj, dict):
        return f"<table><tr>{_cell(obj)}</tr></table>"
    scalars = {k: v for k, v in obj.items() if not isinstance(v, (dict, list))}
    parts = [_kv_table(scalars)] if scalars else []
    for key, value in obj.items():
        if isinstance(value, dict):
            parts.append(f"<h3>{escape(str(key))}</h3>{_kv_table(value)}")
        elif isinstance(value, list):
            if value and all(isinstance(v, dict) for v in value):
                parts.append(f"<h3>{escape(str(key))}</h3>{_rows_table(value)}")
            elif value and all(isinstance(v, list) for v in value):
                rows = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in value)
                parts.append(f"<h3>{escape(str(key))}</h3><table>{rows}</table>")
            else:
                parts.append(f"<h3>{escape(str(key))}</h3><table><tr>{_cell(value)}</tr></table>")
    return "".join(parts)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FashionlabError(f"{path}: cannot read JSON ({exc})") from exc


def _read_history(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise FashionlabError(f"{path}: cannot read ({exc})") from exc
    history = []
    for row in rows:
        parsed: dict[str, Any] = {}
        for key, value in row.items():
            if key is None:
                continue
            if key == "stage":
                parsed[key] = value
            elif key == "epoch":
                parsed[key] = int(float(value)) if value not in (None, "") else 0
            else:
                try:
                    parsed[key] = float(value)
                except (TypeError, ValueError):
                    parsed[key] = value
        history.append(parsed)
    return history


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _metric_name(config: dict, metrics: dict) -> str:
    name = metrics.get("metric") or config.get("metric")
    return f"val {name}" if isinstance(name, str) and name else "val metric"


def write_report(run: Path) -> Path:
    """Write ``run/report.html`` from whatever the run folder holds (config.yaml is required)."""
    from .. import __version__
    from .plots import plot_confusion, plot_curves

    run = Path(run)
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise FashionlabError(f"{run}: not a run folder (no config.yaml)")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FashionlabError(f"{config_path}: cannot read YAML ({exc})") from exc
    if not isinstance(config, dict):
        config = {"config": config}
    metrics = _read_json(run / "metrics.json") if (run / "metrics.json").is_file() else {}
    if not isinstance(metrics, dict):
        metrics = {"metrics": metrics}
    plots = run / "plots"
    history = _read_history(run / "history.csv") if (run / "history.csv").is_file() else []

    if history and not (plots / "curves.png").is_file():
        plot_curves(history, plots / "curves.png", metric_name=_metric_name(config, metrics))
    matrix, classes = metrics.get("confusion_matrix"), metrics.get("classes")
    if isinstance(matrix, list) and isinstance(classes, list) and matrix and not (plots / "confusion.png").is_file():
        plot_confusion(matrix, [str(c) for c in classes], plots / "confusion.png")

    title = f"fashionlab report — {run.name}"
    task = config.get("task", "")
    date = datetime.now().strftime("%Y-%m-%d %H:%M")
    meta = " · ".join(x for x in (f"task: {task}" if task else "", date, f"fashionlab {__version__}") if x)
    body = [f"<h1>{escape(title)}</h1>", f'<p class="meta">{escape(meta)}</p>']

    if metrics:
        headline = {k: v for k, v in metrics.items() if _is_num(v)}
        body.append("<h2>Metrics</h2>")
        if headline:
            cards = "".join(f'<div class="card"><div class="k">{escape(str(k))}</div>'
                            f'<div class="v">{escape(_fmt(v))}</div></div>' for k, v in headline.items())
            body.append(f'<div class="cards">{cards}</div>')
        rest = {k: v for k, v in metrics.items()
                if k not in headline and k not in ("confusion_matrix", "classes")}
        if rest:
            body.append(_generic(rest))

    body.append("<h2>Options</h2>" + _kv_table(config, ("option", "value")))

    for name, heading in (("data.json", "Data"), ("plan.json", "Time-budget plan")):
        if (run / name).is_file():
            body.append(f"<h2>{heading}</h2>" + _generic(_read_json(run / name)))

    if history:
        body.append("<h2>Training history</h2>" + _rows_table(history))

    pngs = sorted(plots.glob("*.png")) if plots.is_dir() else []
    if pngs:
        body.append("<h2>Plots</h2>")
        for png in pngs:
            body.append(f'<figure><img src="{_png_uri(png)}" alt="{escape(png.name)}">'
                        f"<figcaption>{escape(png.name)}</figcaption></figure>")

    preds = sorted((run / "predictions").glob("*.csv")) if (run / "predictions").is_dir() else []
    if preds:
        body.append("<h2>Predictions</h2>")
        for csv_path in preds:
            with open(csv_path, encoding="utf-8", errors="replace") as handle:
                lines = [line.rstrip("\n") for _, line in zip(range(20), handle)]
            body.append(f"<h3>{escape(csv_path.name)} (first {len(lines)} lines)</h3>"
                        f"<pre>{escape(chr(10).join(lines))}</pre>")

    html = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return write_text(run / "report.html", html)
