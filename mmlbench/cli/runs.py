"""`mmlbench runs`: list the runs of a store, show one, remove some.

`runs` alone lists; `show`, `rm` and `prune` are its subcommands. Exit codes: 0 success,
2 bad input (unknown or running run id, bad --where, missing results folder), 1 a damaged run
listed (after the listing) or a failed removal.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mmlbench import api
from mmlbench.cli import guarded
from mmlbench.console import OutputFormat, documents, info, out, warn
from mmlbench.errors import MMLBenchError

if TYPE_CHECKING:
    import pandas as pd

    from mmlbench.report.runs import RunDetails

NAME = "runs"


class Status(str, enum.Enum):
    completed = "completed"
    trained = "trained"
    pruned = "pruned"
    failed = "failed"
    interrupted = "interrupted"
    damaged = "damaged"
    running = "running"
    orphaned = "orphaned"


STATUS_STYLES = {
    "completed": "green", "trained": "green", "pruned": "yellow", "failed": "red", "interrupted": "yellow", "damaged": "magenta", "running": "cyan",
    "orphaned": "magenta",
}  # fmt: skip

ResultsOption = Annotated[Path | None, typer.Option(
    "--results-dir", show_default=False, help="Run store; default $MMLBENCH_RESULTS_DIR, then ./results.")]
WhereOption = Annotated[list[str] | None, typer.Option(
    show_default=False, help="Keep only runs with COLUMN=VALUE (repeatable), as in compare.")]
StatusOption = Annotated[list[Status] | None, typer.Option(
    show_default=False, help="Keep only runs with this status (repeatable).")]
FormatOption = Annotated[OutputFormat | None, typer.Option(
    "--format", show_default=False, help="table (default), json or csv.")]
RunIdsArgument = Annotated[list[str], typer.Argument(help="Exact run ids.", show_default=False)]

app = typer.Typer(
    help="List the runs of a store, show one, remove some.", add_completion=False, rich_markup_mode="rich"
)  # fmt: skip


@app.callback(invoke_without_command=True)
@guarded
def list_command(
    ctx: typer.Context,
    results_dir: ResultsOption = None,
    where: WhereOption = None,
    status: StatusOption = None,
    output_format: FormatOption = None,
) -> None:
    """List runs: status, dataset, model, loss, negatives, seed, best/run epochs, monitor metric, finish time."""
    from mmlbench.report.selection import fail, parse_where

    if ctx.invoked_subcommand is not None:
        if where or status or output_format:
            raise fail(f"--where, --status and --format belong to the listing, not to `runs {ctx.invoked_subcommand}`")
        ctx.obj = results_dir
        return
    listed = api.list_runs(results_dir, parse_where(where or []), [s.value for s in status or []])
    listing = listed.runs
    for message in listed.damaged:
        warn(escape(f"{message} (listed as damaged)"))
    chosen = output_format or OutputFormat.table
    if chosen is OutputFormat.json:
        # Through pandas for numpy types and NaN -> null; json.dumps for unescaped paths.
        documents.print(json.dumps(json.loads(listing.to_json(orient="records", double_precision=15)), indent=2) + "\n")
    elif chosen is OutputFormat.csv:
        documents.print(listing.to_csv(index=False))
    elif listing.empty:
        info(f"no runs in {listed.store / 'runs'}" + (" match" if where or status else ""))
    else:
        out.print(_listing_table(listing))
    if listed.damaged:
        raise MMLBenchError(f"{len(listed.damaged)} damaged run(s) listed; `mmlbench runs prune --damaged` removes them")


@app.command("show")
@guarded
def show_command(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id, or a prefix of exactly one.", show_default=False)],
    results_dir: ResultsOption = None,
) -> None:
    """Show one run: settings, provenance, costs, test metrics and its per-epoch curve."""
    _print_details(api.show_run(run_id, _results(ctx, results_dir)))


@app.command("rm")
@guarded
def rm_command(ctx: typer.Context, run_ids: RunIdsArgument, results_dir: ResultsOption = None) -> None:
    """Remove runs by exact id, with their resume checkpoints; nothing is asked, and an unknown or running id stops it before anything is removed."""
    for run_id in api.remove_runs(run_ids, _results(ctx, results_dir)):
        out.print(f"removed {run_id}", markup=False, highlight=False)


@app.command("prune")
@guarded
def prune_command(
    ctx: typer.Context,
    failed: Annotated[bool, typer.Option("--failed", help="Remove failed runs.")] = False,
    interrupted: Annotated[bool, typer.Option("--interrupted", help="Remove interrupted runs.")] = False,
    damaged: Annotated[bool, typer.Option("--damaged", help="Remove runs whose run.parquet is unreadable.")] = False,
    orphaned: Annotated[bool, typer.Option(
        "--orphaned", help="Remove resume checkpoints whose run has no folder and is not running.")] = False,
    pruned_runs: Annotated[bool, typer.Option("--pruned", help="Remove the trials `tune` pruned.")] = False,
    where: WhereOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    results_dir: ResultsOption = None,
) -> None:
    """Remove failed, interrupted, damaged, pruned runs and/or orphaned resume checkpoints (never completed, trained or running runs)."""
    from mmlbench.report.selection import parse_where

    chosen = {"failed": failed, "interrupted": interrupted, "damaged": damaged, "orphaned": orphaned, "pruned": pruned_runs}
    statuses = [status for status, wanted in chosen.items() if wanted]
    pruned = api.prune_runs(statuses, parse_where(where or []), _results(ctx, results_dir), dry_run=dry_run)
    candidates = pruned.candidates
    if candidates.empty:
        info(f"nothing to prune: no {' or '.join(statuses)} runs")
        return
    if dry_run:
        for run_id, status in zip(candidates["run_id"], candidates["status"], strict=True):
            out.print(f"would remove {run_id} ({status})", markup=False, highlight=False)
        info(f"{len(candidates)} run(s) would be removed; nothing was removed (--dry-run)")
        return
    for run_id in pruned.removed:
        out.print(f"removed {run_id}", markup=False, highlight=False)
    info(f"removed {len(candidates)} run(s)")


def _results(ctx: typer.Context, results_dir: Path | None) -> Path | None:
    """This command's --results-dir, else the one given before it (`runs --results-dir R show X`)."""
    return results_dir or (ctx.parent.obj if ctx.parent else None)


def _listing_table(listing: pd.DataFrame) -> Table:
    from mmlbench.metrics import is_metric_column

    monitor = next(c for c in listing.columns if is_metric_column(c))
    table = Table(title=f"{len(listing)} run(s)")
    settings = ("dataset", "model", "loss", "negatives", "seed")
    held = listing["claimed_by"].notna().any()  # a column only when some run is being trained
    for column in ("run id", "status", *settings, "epochs best/run", monitor, "finished", *(["held by"] if held else [])):
        table.add_column(column, justify="right" if column in ("negatives", "seed", monitor) else "left")
    for row in listing.to_dict("records"):
        status = str(row["status"])
        table.add_row(
            escape(row["run_id"]), f"[{STATUS_STYLES.get(status, 'white')}]{status}[/]",
            *(escape(_plain(row[c])) for c in settings),
            f"{_plain(row['best_epoch'])}/{_plain(row['epochs_run'])}", _number(row[monitor]),
            _plain(row["finished_at"])[:16].replace("T", " "), *([escape(_minutes(_plain(row["claimed_by"])))] if held else []),
        )  # fmt: skip
    return table


def _minutes(text: str) -> str:
    """ISO times in `text` to the minute, as the finished column shows them: 2026-01-01 12:00."""
    return re.sub(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d):\d\d\S*", r"\1 \2", text)


def _print_details(shown: RunDetails) -> None:
    style = STATUS_STYLES.get(shown.status, "white")
    out.print(f"[bold]{escape(shown.run_id)}[/] · [{style}]{shown.status}[/]", highlight=False)
    if shown.error:
        out.print(f"error: {shown.error}", markup=False, highlight=False)
    out.print(f"run folder: {shown.run_dir}", markup=False, highlight=False)
    out.print(_pairs("setting", shown.settings, _plain))
    out.print(_pairs("provenance", shown.provenance, _plain))
    out.print(_pairs("cost", {name: _cost(name, value) for name, value in shown.costs.items()}, str))
    if shown.metrics:
        from mmlbench.cli.render_train import metrics_table

        out.print(f"test metrics at epoch {_plain(shown.best_epoch)}", highlight=False)
        out.print(metrics_table(shown.metrics, shown.ks))
    if shown.curve is None:
        out.print(shown.curve_note, markup=False, highlight=False)
    else:
        out.print(_curve_table(shown.curve, shown.best_epoch))


def _pairs(title: str, values: dict[str, Any], fmt: Callable[[Any], str]) -> Table:
    table = Table(title_justify="left")
    table.add_column(title)
    table.add_column("value")
    for name, value in values.items():
        table.add_row(name, escape(fmt(value)))
    return table


def _curve_table(curve: pd.DataFrame, best_epoch: Any) -> Table:
    """One row per epoch; the best epoch (whose model was tested) in bold."""
    table = Table(title="curve (best epoch in bold)", title_justify="left")
    for column in curve.columns:
        table.add_column(column, justify="right")
    for row in curve.to_dict("records"):
        cells = [_plain(row[c]) if c in ("epoch", "lr") else _number(row[c]) for c in curve.columns]
        table.add_row(*cells, style="bold" if _plain(row["epoch"]) == _plain(best_epoch) else None)
    return table


def _plain(value: Any) -> str:
    from mmlbench.report.selection import normalise

    text = normalise(value)
    return "–" if text == "none" else text


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return _plain(value)


def _cost(name: str, value: Any) -> str:
    finite = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if finite and name == "peak_memory_bytes":
        return f"{value / 2**20:,.0f} MiB"
    if finite and name == "samples_per_second":
        return f"{value:,.0f}"
    return _number(value, 3) if isinstance(value, float) else _plain(value)
