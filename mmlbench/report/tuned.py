"""`compare --tuned`: a tune's final seeds (`selection = tuned`) beside the untuned runs of the same cells.

The completed runs are kept when they are tuned, or untuned (no `selection`: runs of `train`, such
as a preset's setting) in a cell that has tuned runs; the cell is the dataset, model, loss,
negatives and sampler. `selection` becomes a row column (tuned / untuned), so each loss has a
tuned row and, where one exists, an untuned row, each compared with the baseline row of its own
kind by the usual machinery (mean ± std over seeds, % change, paired tests, Holm). Trial runs
(trained or pruned) hold no test metric and are never compared.
"""

from __future__ import annotations

import pandas as pd

from mmlbench.report.selection import MISSING, fail, labels, normalise

SELECTION = "selection"
TUNED = "tuned"
UNTUNED = "untuned"
CELL = ("dataset", "model", "loss", "negatives", "sampler")


def tuned_beside_untuned(runs: pd.DataFrame) -> pd.DataFrame:
    """The tuned runs and the untuned runs of their cells, `selection` reading tuned or untuned."""
    kinds = runs[SELECTION].map(normalise) if SELECTION in runs.columns else pd.Series(MISSING, index=runs.index)
    tuned = kinds == TUNED
    if not tuned.any():
        raise fail("no tuned runs among the completed runs: `mmlbench tune` makes them (its final seeds)")
    columns = [column for column in CELL if column in runs.columns]
    cells = labels(runs, columns)
    untuned = (kinds == MISSING) & cells.isin(set(cells[tuned]))
    kept = runs[tuned | untuned].copy()
    kept[SELECTION] = [TUNED if is_tuned else UNTUNED for is_tuned in tuned[tuned | untuned]]
    return kept.reset_index(drop=True)


def with_selection_row(rows: list[str]) -> list[str]:
    return rows if SELECTION in rows else [*rows, SELECTION]
