"""``fashionlab sweep CONFIG.yaml``: distributed sweeps with Ray Tune."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from . import api
from .config import parse_set


def register(app: typer.Typer, console) -> None:
    @app.command()
    def sweep(
        config: Path = typer.Argument(..., help="Sweep YAML: run options plus a sweep: section."),
        out: Optional[Path] = typer.Option(None, help="Sweep folder (default: out: of the YAML, else runs/sweep/NAME)."),
        address: Optional[str] = typer.Option(None, help="Join a Ray cluster: auto | ray://HOST:10001 (default local)."),
        set_: list[str] = typer.Option([], "--set", help="Run option or sweep.KEY: --set epochs=3 --set sweep.folds=5."),
        as_json: bool = typer.Option(False, "--json", help="Print the combinations summary as JSON."),
    ) -> None:
        """Fan out folds x backbones x hyper-parameters over Ray; gather results and OOF files per combination."""
        verbose = logging.getLogger().level <= logging.INFO
        result = api.sweep(config, out=out, address=address, overrides=parse_set(set_), verbose=verbose)
        if as_json:
            print(json.dumps({"out": str(result["out"]), "summary": result["summary"]}))
            return
        table = Table(title=f"sweep {config.name}: {result['trained']} trial(s) run, {result['skipped']} reused")
        for col in list(result["summary"][0])[:-1]:
            table.add_column(col)
        for row in result["summary"]:
            table.add_row(*[str(v) for k, v in row.items() if k != "run"])
        console.print(table)
        console.print(f"results: {result['out'] / 'results.md'} (trials: results.csv, combinations: summary.csv)")
