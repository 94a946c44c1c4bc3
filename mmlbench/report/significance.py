"""Paired significance tests on per-user metrics, and Holm's correction for many tests."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

T_TEST = "t-test"
WILCOXON = "wilcoxon"
TEST_NAMES = (T_TEST, WILCOXON)
TEST_MARKS = {T_TEST: "*", WILCOXON: "†"}
TEST_TITLES = {T_TEST: "paired t-test", WILCOXON: "Wilcoxon signed-rank test"}
# The multiple-comparison correction `correct` applies, as outputs name it.
CORRECTION = "holm"
CORRECTION_TITLE = "Holm"


@dataclass
class PairedTest:
    """One test of a cell against its baseline cell, for one metric."""

    test: str
    p_value: float
    n_users: int
    p_adjusted: float = math.nan
    significant: bool = False


def per_user_means(frames: Sequence[pd.DataFrame], metric: str, seeds: Sequence[str] | None = None) -> pd.Series:
    """A cell's per-user metric averaged over its seeds (one frame per run), indexed by user.

    `seeds` names each frame's seed: runs of one seed are averaged first, so a run stored
    twice weighs as much as any other seed. Without it every frame is a seed of its own.
    """
    seeds = list(seeds) if seeds is not None else list(range(len(frames)))
    stacked = pd.concat(
        [frame[["user", metric]].assign(seed=seed) for frame, seed in zip(frames, seeds, strict=True)],
        ignore_index=True,
    )
    return stacked.groupby(["seed", "user"])[metric].mean().groupby("user").mean()


def paired_tests(candidate: pd.Series, baseline: pd.Series) -> list[PairedTest]:
    """t-test and Wilcoxon signed-rank on the users present in both series.

    Identical scores have no evidence of a difference: p = 1 (scipy would return NaN or
    fail on all-zero differences).
    """
    from scipy import stats  # imported here: scipy is slow to import and only tests need it

    paired = pd.concat([candidate.rename("candidate"), baseline.rename("baseline")], axis=1, join="inner")
    paired = paired.dropna()
    n_users = len(paired)
    differences = (paired["candidate"] - paired["baseline"]).to_numpy()
    if not np.any(differences):
        return [PairedTest(test, 1.0, n_users) for test in TEST_NAMES]
    with warnings.catch_warnings():
        # scipy warns about precision on nearly identical data; the p-value is still the answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        t_p = stats.ttest_rel(paired["candidate"], paired["baseline"]).pvalue
        w_p = stats.wilcoxon(paired["candidate"], paired["baseline"]).pvalue
    return [PairedTest(T_TEST, _p_or_one(t_p), n_users), PairedTest(WILCOXON, _p_or_one(w_p), n_users)]


def _p_or_one(p_value: float) -> float:
    return 1.0 if math.isnan(p_value) else float(p_value)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    The i-th smallest p (1-based) is multiplied by (m - i + 1), then made monotone
    non-decreasing and capped at 1; rejecting adjusted p < alpha controls the
    family-wise error rate at alpha.
    """
    count = len(p_values)
    order = sorted(range(count), key=lambda i: p_values[i])
    adjusted = [0.0] * count
    running_max = 0.0
    for rank, index in enumerate(order):
        running_max = max(running_max, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running_max
    return adjusted


def family_size(tests: Sequence[PairedTest]) -> int:
    """How many comparisons each test type was corrected over (every test type runs on each)."""
    return len([t for t in tests if t.test == TEST_NAMES[0]])


def correct(tests: Sequence[PairedTest], alpha: float) -> None:
    """Holm-correct each test type separately across all `tests`, and mark the significant ones."""
    for name in TEST_NAMES:
        family = [t for t in tests if t.test == name]
        for test, adjusted in zip(family, holm([t.p_value for t in family]), strict=True):
            test.p_adjusted = adjusted
            test.significant = adjusted < alpha
