"""Renderings of a Comparison for programs: a tidy frame (csv) and json, footer included.

Every number of the table is here at full precision, with what qualifies it: the footer
lines (protocol, filters, warnings, notes) and, for each tested cell, the raw and corrected
p-values with the test, the correction and the number of comparisons named.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

import pandas as pd

from mmlbench.report.compare import Cell, Comparison, Key
from mmlbench.report.render import footer_lines
from mmlbench.report.selection import describe, normalise
from mmlbench.report.significance import CORRECTION, CORRECTION_TITLE, TEST_NAMES, TEST_TITLES, family_size


def to_frame(comparison: Comparison) -> pd.DataFrame:
    """One tidy row per (row, col, metric), one per published value, then one per footer line.

    `source` tells them apart: "ours", "published: <label>", or "note" (the text in `note`).
    """
    spec = comparison.spec
    records = []
    for (row, col), cell in _ordered_cells(comparison):
        for metric in spec.metrics:
            record: dict[str, Any] = {"source": "ours", **dict(zip([*spec.rows, *spec.cols], [*row, *col], strict=True))}
            record |= {"metric": metric, "mean": cell.mean[metric], "std": cell.std[metric], "n": cell.n}
            record["change_pct"] = cell.change_pct.get(metric, math.nan)
            record |= _test_fields(comparison, cell, metric)
            record |= cell.cost
            records.append(record)
    for reference in spec.references:
        coordinates = {c: normalise(reference[c]) for c in [*spec.rows, *spec.cols] if c in reference}
        for metric in spec.metrics:
            if metric in reference:
                records.append({"source": f"published: {reference['label']}", **coordinates,
                                "metric": metric, "mean": reference[metric]})  # fmt: skip
    records += [{"source": "note", "note": line} for line in footer_lines(comparison)]
    frame = pd.DataFrame.from_records(records)
    counts = [c for c in ("n", "n_users", "comparisons") if c in frame.columns]
    return frame.astype({c: "Int64" for c in counts})  # whole numbers, empty where not applicable


def _ordered_cells(comparison: Comparison) -> list[tuple[tuple[Key, Key], Cell]]:
    return sorted(comparison.cells.items(), key=lambda item: _position(comparison, item[0]))


def _position(comparison: Comparison, key: tuple[Key, Key]) -> tuple[int, int]:
    return comparison.row_keys.index(key[0]), comparison.col_keys.index(key[1])


def _baseline_text(comparison: Comparison, cell: Cell) -> str:
    return describe(comparison.spec.rows, comparison.baseline_row(cell.row) or ())


def _test_fields(comparison: Comparison, cell: Cell, metric: str) -> dict[str, Any]:
    """p_ttest (raw), p_ttest_holm (corrected), significant_ttest, ... for a tested cell."""
    tests = cell.tests.get(metric, [])
    if not tests:
        return {}
    fields: dict[str, Any] = {"tested_against": _baseline_text(comparison, cell), "n_users": tests[0].n_users}
    for test in tests:
        slug = test.test.replace("-", "")
        fields |= {f"p_{slug}": test.p_value, f"p_{slug}_{CORRECTION}": test.p_adjusted,
                   f"significant_{slug}": test.significant}  # fmt: skip
    return fields | {"correction": CORRECTION, "comparisons": family_size(comparison.tests()), "alpha": comparison.spec.alpha}


def to_csv(comparison: Comparison) -> str:
    return to_frame(comparison).to_csv(index=False)


def to_json(comparison: Comparison) -> str:
    spec = comparison.spec
    cells = []
    for (row, col), cell in _ordered_cells(comparison):
        metrics = {
            metric: {
                "mean": cell.mean[metric],
                "std": cell.std[metric],
                "change_pct": cell.change_pct.get(metric),
                "tests": {t.test: {**asdict(t), "title": TEST_TITLES[t.test]} for t in cell.tests.get(metric, [])},
            }
            for metric in spec.metrics
        }
        cells.append({"row": dict(zip(spec.rows, row, strict=True)), "col": dict(zip(spec.cols, col, strict=True)),
                      "n": cell.n, "seeds": sorted(set(cell.seeds)), "metrics": metrics, "cost": cell.cost})  # fmt: skip
    document = {
        "spec": asdict(spec),
        "protocols": comparison.protocols,
        "warnings": comparison.warnings,
        "significance": _significance(comparison),
        "footer": footer_lines(comparison),
        "cells": cells,
    }
    return json.dumps(_finite(document), indent=2, ensure_ascii=False, default=str) + "\n"


def _significance(comparison: Comparison) -> dict[str, Any] | None:
    """How the p-values in `cells` were obtained: tests, correction, family size and alpha."""
    if not comparison.spec.baseline:
        return None
    return {
        "baseline": comparison.spec.baseline,
        "on": "per-user metrics averaged over seeds, paired by user, against the baseline row in the same column",
        "tests": {name: TEST_TITLES[name] for name in TEST_NAMES},
        "correction": CORRECTION,
        "comparisons": family_size(comparison.tests()),
        "alpha": comparison.spec.alpha,
        "p_value": "uncorrected", "p_adjusted": f"{CORRECTION_TITLE}-corrected per test over the comparisons",
    }  # fmt: skip


def _finite(value: Any) -> Any:
    """JSON has no NaN: turn it into null, recursively."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
