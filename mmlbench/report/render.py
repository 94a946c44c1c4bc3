"""Renderings of a Comparison for people: the rich table (or its plain text) and markdown, with the footer.

The formats for programs (csv, json) are in `report.machine`.

Which of them `compare` offers, and for which file suffixes, is registered in `report.formats`.
"""

from __future__ import annotations

import io
import math
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from mmlbench.report.compare import Cell, Comparison, Key
from mmlbench.report.selection import describe, where_text
from mmlbench.report.significance import CORRECTION_TITLE, TEST_MARKS, TEST_NAMES, TEST_TITLES, family_size

COST_FIELDS = ("epoch_seconds_median", "eval_seconds_median", "peak_memory_bytes")
EMPTY = "—"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not math.isnan(value)


def _col_label(comparison: Comparison, col: Key) -> str:
    return describe(comparison.spec.cols, col) or "all"


def _row_label(comparison: Comparison, row: Key) -> str:
    label = " / ".join(row)
    return f"{label} (baseline)" if comparison.is_baseline(row) else label


def _uniform_n(comparison: Comparison) -> int | None:
    counts = {cell.n for cell in comparison.cells.values()}
    return counts.pop() if len(counts) == 1 else None


def metric_parts(comparison: Comparison, cell: Cell | None, metric: str) -> list[str]:
    """['0.1837 ± 0.0012', '(n=2) +5.2%*†']: the value, then n (when it varies), change and marks."""
    if cell is None or not _is_number(cell.mean[metric]):
        return [EMPTY]
    value = metric_text(cell.mean[metric])
    if _is_number(cell.std[metric]):
        value += f" ± {metric_text(cell.std[metric])}"
    detail = f"(n={cell.n}) " if _uniform_n(comparison) is None else ""
    change = cell.change_pct.get(metric)
    if change is not None and _is_number(change):
        detail += f"{change:+.1f}%"
    detail += "".join(TEST_MARKS[name] for name in cell.marks(metric))
    return [value, detail.strip()] if detail.strip() else [value]


def metric_text(value: float) -> str:
    """Four decimals, or three significant digits below 0.001 (arp@K, an item's share of the
    training pairs, is about 1e-4: four decimals would show one digit of it)."""
    return f"{value:.3g}" if 0 < abs(value) < 0.001 else f"{value:.4f}"


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
    return metric_text(value) if _is_number(value) else ""


WARNING = "warning: "


def footer_lines(comparison: Comparison) -> list[str]:
    """What qualifies the table, in every format: protocol, the runs kept, warnings, how cells are
    summarised, and exactly which tests and corrections were applied."""
    spec = comparison.spec
    lines = list(comparison.protocols)
    if spec.where:
        lines.append(f"runs: {where_text(spec.where)} (--where)")
    lines += [WARNING + warning for warning in comparison.warnings]
    n = _uniform_n(comparison)
    seeds = f"n = {n} seed{'s' if n != 1 else ''} per cell" if n else "(n=...) is the number of distinct seeds"
    lines.append(f"cells: mean ± sample std over distinct seeds; {seeds}")
    if spec.cost:
        lines.append("cost: median seconds per epoch · median evaluation seconds · largest peak memory, over seeds")
    if spec.baseline:
        base = describe(spec.baseline, spec.baseline.values())
        lines.append(f"% change: relative to the baseline {base} in the same column")
        lines.append(significance_line(comparison))
    lines += comparison.notes
    lines += [
        f"published (no column in this table): {r['label']}: "
        + ", ".join(f"{m} {r[m]}" for m in spec.metrics if m in r)
        for r in spec.references
        if comparison.reference_col(r) is None
    ]
    return lines


def significance_line(comparison: Comparison) -> str:
    """Which tests against which baseline, on what, corrected how: the meaning of the marks."""
    base = describe(comparison.spec.baseline, comparison.spec.baseline.values())
    tests = comparison.tests()
    if not tests:
        return "significance: no tests were run (no cell had per-user metrics for itself and its baseline)"
    marks = ", ".join(f"{TEST_MARKS[name]} {TEST_TITLES[name]}" for name in TEST_NAMES)
    return (
        f"significance vs {base} in the same column, on per-user metrics averaged over seeds: {marks}; "
        f"{CORRECTION_TITLE} correction per test over {family_size(tests)} comparisons; "
        f"alpha = {comparison.spec.alpha:g}"
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
    footer = Text("\n").join(Text(line, style="yellow" if line.startswith(WARNING) else "") for line in footer_lines(comparison))
    return Group(table, footer)


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
    for line in footer_lines(comparison):
        lines.append(f"**warning:** {line.removeprefix(WARNING)}  " if line.startswith(WARNING) else f"{line}  ")
    return "\n".join(lines) + "\n"
