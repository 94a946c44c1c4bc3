"""What `train` and `evaluate` print: tables for people, one JSON document or CSV rows for scripts (--format)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from mmlbench.config import RunConfig
from mmlbench.config_checks import option_name
from mmlbench.console import OutputFormat, documents, info, out
from mmlbench.errors import MMLBenchError
from mmlbench.metrics import METRIC_NAMES, is_metric_column, parse_metric

if TYPE_CHECKING:  # the layers below import torch: `--help` and `evaluate --help` do not pay for it
    from mmlbench.api import RunOutcome, SweepResult

# Costs and selection facts of a run, beside its metrics in the JSON document.
_RUN_FACTS = (
    "best_epoch", "epochs_run", "protocol", "epoch_seconds_median", "eval_seconds_median",
    "samples_per_second", "peak_memory_bytes", "device_name",
)

PROTOCOL_NOTES = {
    "test-as-validation": "protocol: test-as-validation (the test split selected the best epoch, as in the reference code)",
    "validation": "protocol: validation (the validation split selected the best epoch; metrics are on test)",
}


def _number(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def metrics_table(values: Mapping[str, object], ks: Sequence[int]) -> Table:
    """Metrics as rows, cut-offs as columns, from columns named like 'recall@20'."""
    table = Table()
    table.add_column("metric")
    for k in ks:
        table.add_column(f"@{k}", justify="right")
    for metric in METRIC_NAMES:
        table.add_row(metric, *(_number(values.get(f"{metric}@{k}")) for k in ks))
    return table


def report_sweep(result: SweepResult, output_format: OutputFormat = OutputFormat.table) -> None:
    """Print what `train` did; failures exit 1 and an interrupted sweep exits 130, as Ctrl-C does.

    A single run that failed is its error line alone, as any other bad input; with json or csv
    the document is printed whatever happened, and the exit code is the same.
    """
    entries = result.entries
    single = entries[0] if len(entries) == 1 else None
    if output_format is OutputFormat.json:
        print_json(sweep_document(result))
    elif output_format is OutputFormat.csv:
        print_csv(sweep_rows(result))
    elif single is None:
        print_sweep(result)
    elif single.outcome is not None:
        print_run(single.outcome)
    elif single.claimed_elsewhere:
        info(f"skipped {single.label}: {single.error}")
    if result.interrupted:
        raise MMLBenchError(
            f"interrupted: {result.stopped} run(s) stopped, {result.cancelled} not started; the same command finishes the sweep",
            exit_code=130,
        )
    failed = result.failed
    if len(entries) == 1 and failed:
        raise MMLBenchError(failed[0].error) from result.traceback()
    if failed:
        raise MMLBenchError(f"{len(failed)} of {len(entries)} runs failed (see the table above)") from result.traceback()


def report_plan(rows: list[tuple[RunConfig, str, str]], output_format: OutputFormat = OutputFormat.table) -> None:
    """What `train --dry-run` would do: a table, one JSON document, or CSV rows (run id, state, settings)."""
    if output_format is OutputFormat.json:
        print_json(plan_document(rows))
    elif output_format is OutputFormat.csv:
        print_csv([{"run_id": run_id, "state": state, **dataclasses.asdict(config)} for config, run_id, state in rows])
    else:
        print_plan(rows)


def print_run(outcome: RunOutcome) -> None:
    row = outcome.row
    if outcome.skipped:
        info(f"already completed: {outcome.run_dir} (use --force to run it again)")
    ks = [int(k) for k in str(row["ks"]).split(",")]
    out.print(f"{row['run_id']} · test metrics at epoch {row.get('best_epoch')} ({row['status']})", highlight=False)
    out.print(metrics_table(row, ks))
    memory = row.get("peak_memory_bytes") or 0
    out.print(
        f"epochs run {row.get('epochs_run')} · median epoch {_number(row.get('epoch_seconds_median'), 2)} s"
        f" · median eval {_number(row.get('eval_seconds_median'), 2)} s"
        f" · {_number(row.get('samples_per_second'), 0)} pairs/s · peak memory {memory / 2**20:,.0f} MiB"
        f" · {row.get('device_name')}",
        highlight=False,
    )
    out.print(PROTOCOL_NOTES.get(str(row.get("protocol")), f"protocol: {row.get('protocol')}"), highlight=False)
    out.print(f"run folder: {outcome.run_dir}", highlight=False, markup=False)


def print_sweep(result: SweepResult) -> None:
    """One row per run: its id, status, the settings its id does not show where runs differ
    only in them, the monitor and its K's recall and NDCG, the epoch time and any error."""
    entries, axes = result.entries, result.unlabelled_settings
    metrics = _metric_columns(result)
    table = Table(title=f"sweep: {len(entries)} runs")
    for column in ("run", "status", *(option_name(axis).removeprefix("--") for axis in axes)):
        table.add_column(column)
    for column in (*metrics, "epoch s"):
        table.add_column(column, justify="right")
    table.add_column("note")
    for entry, run_id in zip(entries, result.run_ids):
        row = entry.outcome.row if entry.outcome else {}
        table.add_row(
            run_id, entry.status, *(_setting_text(getattr(entry.config, axis)) for axis in axes),
            *(_number(row.get(metric)) for metric in metrics), _number(row.get("epoch_seconds_median"), 2),
            Text(entry.error),  # Text: brackets stay
        )
    out.print(table)
    out.print(" · ".join(f"{n} {status}" for status, n in sorted(result.counts.items())), highlight=False)


def _metric_columns(result: SweepResult) -> list[str]:
    """Each run's --monitor, then recall and NDCG at the monitor's K: the cut-offs asked for."""
    columns: list[str] = []
    for entry in result.entries:
        _, k = parse_metric(entry.config.monitor)
        for name in (entry.config.monitor, f"recall@{k}", f"ndcg@{k}"):
            if name not in columns:
                columns.append(name)
    return columns


def _setting_text(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, tuple):
        return ",".join(map(_setting_text, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def print_plan(rows: list[tuple[RunConfig, str, str]]) -> None:
    table = Table(title=f"plan: {len(rows)} runs ({sum(state == 'to run' for *_, state in rows)} to run)")
    for column in ("#", "run id", "loss", "negatives", "seed", "state"):
        table.add_column(column)
    for number, (config, run_id, state) in enumerate(rows, 1):
        table.add_row(str(number), run_id, config.loss, str(config.negatives), str(config.seed), state)
    out.print(table)


def print_csv(rows: Sequence[Mapping[str, Any]]) -> None:
    """The whole stdout of a --format csv command: a header, one line per row (the columns of every
    row, in the order they first occur); NaN and None are empty cells."""
    columns = list(dict.fromkeys(column for row in rows for column in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({column: _cell(row.get(column)) for column in columns} for row in rows)
    documents.print(text.getvalue())


def _cell(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "" if value is None else value


def print_json(document: Mapping[str, Any]) -> None:
    """The whole stdout of a --format json command: one document, NaN written as null."""
    documents.print(json.dumps(_plain(document), indent=2, allow_nan=False) + "\n")


def _plain(value: Any) -> Any:
    """Numpy scalars, paths, NaN and tuples turned into what JSON holds."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy and torch scalars
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def sweep_document(result: SweepResult) -> dict[str, Any]:
    """Every run of a train command: id, status, error, the config asked for, metrics, costs."""
    runs = []
    for entry in result.entries:
        row = entry.outcome.row if entry.outcome else {}
        run = {"run_id": row.get("run_id"), "status": entry.status, "error": entry.error or None}
        run["config"] = dataclasses.asdict(entry.config)
        run["metrics"] = {name: value for name, value in row.items() if is_metric_column(name)}
        run.update({fact: row.get(fact) for fact in _RUN_FACTS})
        run["run_dir"] = str(entry.outcome.run_dir) if entry.outcome else None
        runs.append(run)
    return {"command": "train", "runs": runs, "counts": result.counts}


def sweep_rows(result: SweepResult) -> list[dict[str, Any]]:
    """The sweep document's runs as CSV rows: the config's settings, the metrics and costs as columns."""
    return [
        {**{k: v for k, v in run.items() if k not in ("config", "metrics")}, **run["config"], **run["metrics"]}
        for run in sweep_document(result)["runs"]
    ]


def plan_document(rows: list[tuple[RunConfig, str, str]]) -> dict[str, Any]:
    plan = [{"run_id": run_id, "state": state, "config": dataclasses.asdict(config)} for config, run_id, state in rows]
    return {"command": "train", "dry_run": True, "plan": plan}
