"""Renderings of a Comparison: rich table (or its plain text), markdown, a tidy frame (csv) and json.

Which of them `compare` offers, and for which file suffixes, is registered in `report.formats`.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict
from typing import Any

import pandas as pd
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from mmlbench.report.compare import Cell, Comparison, Key
from mmlbench.report.selection import describe, normalise
from mmlbench.report.significance import TEST_MARKS, TEST_NAMES, TEST_TITLES

COST_FIELDS = ("epoch_seconds_median", "eval_seconds_median", "peak_memory_bytes")
EMPTY = "—"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not math.isnan(value)


def _col_label(comparison: Comparison, col: Key) -> str:
    return describe(comparison.spec.cols, col) or "all"


def _is_baseline(comparison: Comparison, row: Key) -> bool:
    return bool(comparison.spec.baseline) and comparison.baseline_row(row) == row


def _row_label(comparison: Comparison, row: Key) -> str:
    label = " / ".join(row)
    return f"{label} (baseline)" if _is_baseline(comparison, row) else label


def _uniform_n(comparison: Comparison) -> int | None:
    counts = {cell.n for cell in comparison.cells.values()}
    return counts.pop() if len(counts) == 1 else None


def metric_parts(comparison: Comparison, cell: Cell | None, metric: str) -> list[str]:
    """['0.1837 ± 0.0012', '(n=2) +5.2%*†']: the value, then n (when it varies), change and marks."""
    if cell is None or not _is_number(cell.mean[metric]):
        return [EMPTY]
    value = f"{cell.mean[metric]:.4f}"
    if _is_number(cell.std[metric]):
        value += f" ± {cell.std[metric]:.4f}"
    detail = f"(n={cell.n}) " if _uniform_n(comparison) is None else ""
    change = cell.change_pct.get(metric)
    if change is not None and _is_number(change):
        detail += f"{change:+.1f}%"
    detail += "".join(TEST_MARKS[name] for name in cell.marks(metric))
    return [value, detail.strip()] if detail.strip() else [value]


def _cost_text(cell: Cell | None) -> str:
    if cell is None:
        return EMPTY
    parts = [_number_text(name, cell.cost[name]) for name in COST_FIELDS]
    return " · ".join(parts)


def _number_text(name: str, value: float) -> str:
    if not _is_number(value):
        return EMPTY
    if name == "peak_memory_bytes":
        return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"
    return f"{value:.2f} s"


def grid(comparison: Comparison, separator: str = " ") -> tuple[list[tuple[str, str]], list[list[str]], list[list[str]]]:
    """Headers as (column label, metric) pairs, our rows and the published rows, as strings.

    `separator` joins a cell's value and its detail (n, change, marks).
    """
    spec = comparison.spec
    headers = [("", " / ".join(spec.rows))]
    for col in comparison.col_keys:
        label = _col_label(comparison, col)
        headers += [(label, metric) for metric in spec.metrics] + ([(label, "cost")] if spec.cost else [])
    rows = []
    for row in comparison.row_keys:
        line = [_row_label(comparison, row)]
        for col in comparison.col_keys:
            cell = comparison.cell(row, col)
            line += [separator.join(metric_parts(comparison, cell, metric)) for metric in spec.metrics]
            line += [_cost_text(cell)] if spec.cost else []
        rows.append(line)
    return headers, rows, _reference_rows(comparison)


def _reference_rows(comparison: Comparison) -> list[list[str]]:
    spec = comparison.spec
    rows = []
    for reference in spec.references:
        placed = comparison.reference_col(reference)
        if placed is None:
            continue
        line = [f"published: {reference['label']}"]
        for col in comparison.col_keys:
            line += [_reference_value(reference, m) if col == placed else "" for m in spec.metrics]
            line += [""] if spec.cost else []
        rows.append(line)
    return rows


def _reference_value(reference: dict[str, Any], metric: str) -> str:
    value = reference.get(metric)
    return f"{value:.4f}" if _is_number(value) else ""


def footer_lines(comparison: Comparison) -> list[str]:
    """Protocol, how cells are summarised, and exactly which tests and corrections were applied."""
    spec = comparison.spec
    lines = list(comparison.protocols)
    n = _uniform_n(comparison)
    seeds = f"n = {n} seeds per cell" if n else "(n=...) is the number of seeds"
    lines.append(f"cells: mean ± sample std over seeds; {seeds}")
    if spec.cost:
        lines.append("cost: median seconds per epoch · median evaluation seconds · largest peak memory, over seeds")
    if spec.baseline:
        base = describe(spec.baseline, spec.baseline.values())
        lines.append(f"% change: relative to the baseline {base} in the same column")
        lines.append(_tests_line(comparison, base))
    lines += comparison.notes
    lines += [
        f"published (no column in this table): {r['label']}: "
        + ", ".join(f"{m} {r[m]}" for m in spec.metrics if m in r)
        for r in spec.references
        if comparison.reference_col(r) is None
    ]
    return lines


def _tests_line(comparison: Comparison, base: str) -> str:
    tests = comparison.tests()
    if not tests:
        return "significance: no tests were run (no cell had per-user metrics for itself and its baseline)"
    per_test = len([t for t in tests if t.test == TEST_NAMES[0]])
    marks = ", ".join(f"{TEST_MARKS[name]} {TEST_TITLES[name]}" for name in TEST_NAMES)
    return (
        f"significance vs {base} in the same column, on per-user metrics averaged over seeds: {marks}; "
        f"Holm correction per test over {per_test} comparisons; alpha = {comparison.spec.alpha:g}"
    )


def to_rich_table(comparison: Comparison) -> Group:
    """The table, then its footer as free text (a caption would wrap at the table's width)."""
    headers, rows, references = grid(comparison, separator="\n")
    # Text objects, not strings: labels and values are data, never rich markup.
    table = Table()
    table.add_column(Text(headers[0][1]), style="bold", no_wrap=True)
    for col_label, metric in headers[1:]:
        table.add_column(Text(f"{col_label}\n{metric}"), justify="right")
    for index, line in enumerate(rows):
        table.add_row(*map(Text, line), end_section=bool(references) and index == len(rows) - 1)
    for line in references:
        table.add_row(*map(Text, line), style="dim")
    return Group(table, Text("\n".join(footer_lines(comparison))))


def to_text(comparison: Comparison) -> str:
    """The rich table and its footer as plain text (no colour), for a file or a pipe."""
    buffer = io.StringIO()
    Console(file=buffer, width=160, no_color=True).print(to_rich_table(comparison))
    return buffer.getvalue()


def to_markdown(comparison: Comparison) -> str:
    headers, rows, references = grid(comparison)
    titles = [" ".join(part for part in header if part) for header in headers]
    escape = [[text.replace("|", "\\|") for text in line] for line in [titles, *rows, *references]]
    lines = ["| " + " | ".join(escape[0]) + " |", "|" + "---|" + "---:|" * (len(headers) - 1)]
    lines += ["| " + " | ".join(line) + " |" for line in escape[1:]]
    lines.append("")
    lines += [f"**warning:** {w}  " for w in comparison.warnings]
    lines += [f"{line}  " for line in footer_lines(comparison)]
    return "\n".join(lines) + "\n"


def to_frame(comparison: Comparison) -> pd.DataFrame:
    """One tidy row per (row, col, metric), then one per published value (`source` tells them apart)."""
    spec = comparison.spec
    records = []
    for (row, col), cell in sorted(comparison.cells.items(), key=lambda item: _position(comparison, item[0])):
        for metric in spec.metrics:
            record: dict[str, Any] = {"source": "ours", **dict(zip([*spec.rows, *spec.cols], [*row, *col], strict=True))}
            record |= {"metric": metric, "mean": cell.mean[metric], "std": cell.std[metric], "n": cell.n}
            record["change_pct"] = cell.change_pct.get(metric, math.nan)
            record |= _test_fields(cell, metric)
            record |= cell.cost
            records.append(record)
    for reference in spec.references:
        coordinates = {c: normalise(reference[c]) for c in [*spec.rows, *spec.cols] if c in reference}
        for metric in spec.metrics:
            if metric in reference:
                records.append({"source": f"published: {reference['label']}", **coordinates,
                                "metric": metric, "mean": reference[metric]})  # fmt: skip
    return pd.DataFrame.from_records(records)


def _position(comparison: Comparison, key: tuple[Key, Key]) -> tuple[int, int]:
    return comparison.row_keys.index(key[0]), comparison.col_keys.index(key[1])


def _test_fields(cell: Cell, metric: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for test in cell.tests.get(metric, []):
        slug = test.test.replace("-", "")
        fields |= {f"p_{slug}": test.p_value, f"p_{slug}_holm": test.p_adjusted,
                   f"significant_{slug}": test.significant, "n_users": test.n_users}  # fmt: skip
    return fields


def to_csv(comparison: Comparison) -> str:
    return to_frame(comparison).to_csv(index=False)


def to_json(comparison: Comparison) -> str:
    spec = comparison.spec
    cells = []
    for (row, col), cell in sorted(comparison.cells.items(), key=lambda item: _position(comparison, item[0])):
        metrics = {
            metric: {
                "mean": cell.mean[metric],
                "std": cell.std[metric],
                "change_pct": cell.change_pct.get(metric),
                "tests": {t.test: asdict(t) for t in cell.tests.get(metric, [])},
            }
            for metric in spec.metrics
        }
        cells.append({"row": dict(zip(spec.rows, row, strict=True)), "col": dict(zip(spec.cols, col, strict=True)),
                      "n": cell.n, "metrics": metrics, "cost": cell.cost})  # fmt: skip
    document = {
        "spec": asdict(spec),
        "protocols": comparison.protocols,
        "warnings": comparison.warnings,
        "footer": footer_lines(comparison),
        "cells": cells,
    }
    return json.dumps(_finite(document), indent=2, ensure_ascii=False, default=str) + "\n"


def _finite(value: Any) -> Any:
    """JSON has no NaN: turn it into null, recursively."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
