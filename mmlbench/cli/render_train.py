"""Tables printed by `mmlbench train`: one run's results, a sweep's summary, a sweep's plan."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.table import Table

from mmlbench.config import RunConfig
from mmlbench.console import info, out
from mmlbench.engine.runner import RunOutcome
from mmlbench.errors import MMLBenchError
from mmlbench.report import store
from mmlbench.report.store import METRIC_NAMES
from mmlbench.sweep import CANCELLED, CLAIMED, RunTraceback, SweepEntry, was_interrupted

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


def report_sweep(entries: list[SweepEntry]) -> None:
    """Print what `train` did; failures exit 1 and an interrupted sweep exits 130, as Ctrl-C does.

    A single run that failed is its error line alone, as any other bad input.
    """
    single = entries[0] if len(entries) == 1 else None
    if single is None:
        print_sweep(entries)
    elif single.outcome is not None:
        print_run(single.outcome)
    elif single.status == CLAIMED:
        info(f"skipped {single.label}: {single.error}")
    if was_interrupted(entries):
        stopped = sum(e.status == store.STATUS_INTERRUPTED for e in entries)
        cancelled = sum(e.status == CANCELLED for e in entries)
        raise MMLBenchError(
            f"interrupted: {stopped} run(s) stopped, {cancelled} not started; the same command finishes the sweep",
            exit_code=130,
        )
    failed = [e for e in entries if e.status == store.STATUS_FAILED]
    if len(entries) == 1 and failed:
        raise MMLBenchError(failed[0].error) from RunTraceback.of(failed)
    if failed:
        raise MMLBenchError(f"{len(failed)} of {len(entries)} runs failed (see the table above)") from RunTraceback.of(failed)


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
    out.print(f"run folder: {outcome.run_dir}", highlight=False)


def print_sweep(entries: list[SweepEntry]) -> None:
    table = Table(title=f"sweep: {len(entries)} runs")
    for column in ("run", "status", "recall@20", "ndcg@20", "epoch s", "note"):
        table.add_column(column, justify="right" if column in ("recall@20", "ndcg@20", "epoch s") else "left")
    for entry in entries:
        row = entry.outcome.row if entry.outcome else {}
        table.add_row(
            entry.label, entry.status, _number(row.get("recall@20")), _number(row.get("ndcg@20")),
            _number(row.get("epoch_seconds_median"), 2), entry.error,
        )
    out.print(table)
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    out.print(" · ".join(f"{n} {status}" for status, n in sorted(counts.items())), highlight=False)


def print_plan(rows: list[tuple[RunConfig, str, str]]) -> None:
    table = Table(title=f"plan: {len(rows)} runs ({sum(state == 'to run' for *_, state in rows)} to run)")
    for column in ("#", "run id", "loss", "negatives", "seed", "state"):
        table.add_column(column)
    for number, (config, run_id, state) in enumerate(rows, 1):
        table.add_row(str(number), run_id, config.loss, str(config.negatives), str(config.seed), state)
    out.print(table)

