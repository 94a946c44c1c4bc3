"""What `tune` prints: per cell its search (trials, best validation value, chosen settings) and its final
seeds' test metrics, as a table, one JSON document or CSV rows (one per cell)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from mmlbench.cli.render_train import print_csv, print_json
from mmlbench.console import OutputFormat, info, out
from mmlbench.errors import MMLBenchError
from mmlbench.metrics import is_metric_column, parse_metric

if TYPE_CHECKING:
    from mmlbench.api import Tuned

PROTOCOL = (
    "protocol: every trial trained and selected on the validation split (no test metric computed); "
    "test evaluated once, on each best setting's final seeds"
)


def report_plan(tuned: Tuned, output_format: OutputFormat) -> None:
    """`tune --dry-run`: each cell's study and what it searches."""
    cells = [_cell_plan(cell) for cell in tuned.cells]
    if output_format is OutputFormat.json:
        print_json({"command": "tune", "dry_run": True, "cells": cells})
    elif output_format is OutputFormat.csv:
        print_csv([{**{k: v for k, v in cell.items() if k != "space"}, "space": _space_text(cell["space"])} for cell in cells])
    else:
        table = Table(title=f"tune plan: {len(cells)} cells")
        for column in ("study", "searches", "trials", "seeds", "pruner"):
            table.add_column(column)
        for cell in cells:
            table.add_row(cell["study"], Text(_space_text(cell["space"])), str(cell["trials"]), str(cell["seeds"]), cell["pruner"])
        out.print(table)


def _cell_plan(cell: Any) -> dict[str, Any]:
    config = cell.config
    return {
        "study": cell.name, "dataset": config.dataset, "model": config.model, "loss": config.loss,
        "negatives": config.negatives, "sampler": config.sampler, "seed": config.seed, "monitor": config.monitor,
        "space": {name: dimension.describe() for name, dimension in cell.space.items()},
        "trials": cell.settings.trials, "seeds": cell.settings.seeds, "pruner": cell.settings.pruner,
    }  # fmt: skip


def _space_text(space: dict[str, str]) -> str:
    return "; ".join(f"{name} {text}" for name, text in space.items())


def report_tune(tuned: Tuned, output_format: OutputFormat) -> None:
    """The tune's cells; an interrupted tune exits 130, a cell without a best setting or a failed final run 1."""
    result = tuned.result
    assert result is not None
    cells = [_cell_document(cell) for cell in result.cells]
    if output_format is OutputFormat.json:
        print_json({"command": "tune", "cells": cells, "interrupted": result.interrupted})
    elif output_format is OutputFormat.csv:
        print_csv([_csv_row(cell) for cell in cells])
    else:
        _print_table(cells)
        out.print(PROTOCOL, highlight=False)
        if tuned.plot is not None:
            info(f"wrote {tuned.plot}")
    if result.interrupted:
        raise MMLBenchError("interrupted: trials in flight were given back; the same command finishes the tune", exit_code=130)
    unsearched = [cell["study"] for cell in cells if cell["best"] is None]
    failed = [run for cell in cells for run in cell["final"]["runs"] if run["status"] == "failed"]
    if unsearched:
        raise MMLBenchError(f"{len(unsearched)} cell(s) have no completed trial (every trial pruned or failed): {', '.join(unsearched)}")
    if failed:
        raise MMLBenchError(f"{len(failed)} final run(s) failed: {failed[0]['run_id']}: {failed[0]['error']}")


def _cell_document(cell: Any) -> dict[str, Any]:
    document = _cell_plan(cell.cell)
    document["trials"] = cell.counts
    document["journal"] = cell.journal
    best = cell.best
    document["best"] = None if best is None else {"trial": best.number, "validation": best.value, "settings": best.params}
    runs = [
        {"run_id": entry.label, "seed": entry.config.seed, "status": entry.status, "error": entry.error or None,
         "metrics": {name: value for name, value in (entry.outcome.row if entry.outcome else {}).items() if is_metric_column(name)}}
        for entry in cell.finals
    ]  # fmt: skip
    metrics = cell.final_metrics
    document["final"] = {
        "runs": runs,
        "mean": {name: mean for name, (mean, _, _) in metrics.items()},
        "std": {name: std for name, (_, std, _) in metrics.items()},
        "n": max((n for _, _, n in metrics.values()), default=0),
    }
    return document


def _csv_row(cell: dict[str, Any]) -> dict[str, Any]:
    best = cell["best"] or {}
    row = {key: cell[key] for key in ("study", "dataset", "model", "loss", "negatives", "sampler", "seed", "pruner")}
    row.update({f"trials_{state}": count for state, count in cell["trials"].items()})
    row.update({"best_trial": best.get("trial"), "best_validation": best.get("validation")})
    row.update({f"set_{name}": value for name, value in (best.get("settings") or {}).items()})
    row.update({f"{name}_mean": value for name, value in cell["final"]["mean"].items()})
    row.update({f"{name}_std": value for name, value in cell["final"]["std"].items()})
    return {**row, "final_seeds": cell["final"]["n"]}


def _print_table(cells: list[dict[str, Any]]) -> None:
    table = Table(title=f"tune: {len(cells)} cells")
    for column in ("study", "trials done/pruned/failed/reused", "best valid", "chosen settings"):
        table.add_column(column)
    shown = _test_metrics(cells)
    for name in shown:
        table.add_column(f"test {name}", justify="right")
    table.add_column("seeds", justify="right")
    for cell in cells:
        counts, best = cell["trials"], cell["best"]
        trials = f"{counts['finished']}/{counts['pruned']}/{counts['failed']}/{counts['reused']}"
        settings = ", ".join(f"{k}={_shown(v)}" for k, v in (best["settings"] if best else {}).items())
        valid = f"{best['validation']:.4f} (#{best['trial']})" if best else "–"
        final = cell["final"]
        metrics = [_mean_std(final["mean"].get(name), final["std"].get(name)) for name in shown]
        table.add_row(cell["study"], trials, valid, Text(settings), *metrics, str(final["n"]))
    out.print(table)


def _test_metrics(cells: list[dict[str, Any]]) -> list[str]:
    """Each cell's monitor, and recall and NDCG at its K: the columns train shows."""
    names: list[str] = []
    for cell in cells:
        _, k = parse_metric(cell["monitor"])
        for name in (cell["monitor"], f"recall@{k}", f"ndcg@{k}"):
            if name not in names:
                names.append(name)
    return names


def _mean_std(mean: float | None, std: float | None) -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    return f"{mean:.4f} ± {std:.4f}" if std is not None and math.isfinite(std) else f"{mean:.4f}"


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(_shown, value))
    return f"{value:.3g}" if isinstance(value, float) else str(value)
