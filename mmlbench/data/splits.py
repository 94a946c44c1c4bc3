"""Per-user hold-out splits, vectorised: the test split of generic data and the validation split.

A split ordered by time (temporal, or leave-one-out with a time column) holds out each
user's latest rows, for test and then for validation: no train row is later than a
validation row, and no validation row later than a test row.

Every split works on rows in a canonical order (sorted by user, then item), so the same
seed always selects the same rows. Hold-out sizes are round(fraction * n_u), rounded half
up, and never all of a user's rows: at least one stays in train.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmlbench.errors import MMLBenchError

RANDOM = "random"
TEMPORAL = "temporal"
LEAVE_ONE_OUT = "leave-one-out"
SPLIT_SYNTAX = "random:F, temporal:F or leave-one-out (F a fraction such as 0.2)"


@dataclass(frozen=True)
class SplitSpec:
    """How the test split of generic data is chosen: `kind` and, except leave-one-out, a fraction."""

    kind: str
    fraction: float | None = None

    def __str__(self) -> str:
        return self.kind if self.fraction is None else f"{self.kind}:{self.fraction:g}"

    @property
    def needs_time(self) -> bool:
        return self.kind == TEMPORAL


def check_fraction(value: float, what: str) -> float:
    """`value` if it lies strictly between 0 and 1, else an error naming `what`."""
    if not 0.0 < value < 1.0:  # also rejects NaN
        raise MMLBenchError(f"{what} must be between 0 and 1 (exclusive), got {value:g}")
    return value


def parse_split(text: str) -> SplitSpec:
    """Parse `random:0.2`, `temporal:0.2` or `leave-one-out`."""
    kind, sep, fraction = text.strip().partition(":")
    if kind == LEAVE_ONE_OUT and not sep:
        return SplitSpec(LEAVE_ONE_OUT)
    if kind in (RANDOM, TEMPORAL) and sep:
        try:
            value = float(fraction)
        except ValueError:
            raise MMLBenchError(f"--split '{text}': '{fraction}' is not a number") from None
        return SplitSpec(kind, check_fraction(value, f"--split {kind} fraction"))
    raise MMLBenchError(f"--split '{text}' not understood; use {SPLIT_SYNTAX}")


def holdout_sizes(rows_per_user: np.ndarray, fraction: float) -> np.ndarray:
    """round(fraction * n_u) per user, rounded half up, capped so one row stays in train."""
    sizes = np.floor(fraction * rows_per_user + 0.5).astype(np.int64)
    return np.minimum(sizes, np.maximum(rows_per_user - 1, 0))


def top_per_user(users: np.ndarray, sizes: np.ndarray, *priorities: np.ndarray) -> np.ndarray:
    """Mask of each user's `sizes[user]` rows with the highest priority.

    `priorities` are sort keys, most significant first (e.g. time, then item to break ties).
    """
    order = np.lexsort((*reversed(priorities), users))
    sorted_users = users[order]
    group_end = np.searchsorted(sorted_users, sorted_users, side="right")
    rank_from_top = group_end - 1 - np.arange(len(users))
    mask = np.empty(len(users), dtype=bool)
    mask[order] = rank_from_top < sizes[sorted_users]
    return mask


def random_holdout(users: np.ndarray, n_users: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Mask of round(fraction * n_u) random rows per user (at least one row stays)."""
    sizes = holdout_sizes(np.bincount(users, minlength=n_users), fraction)
    return top_per_user(users, sizes, rng.random(len(users)))


def latest_holdout(
    users: np.ndarray, items: np.ndarray, times: np.ndarray, n_users: int, fraction: float
) -> np.ndarray:
    """Mask of each user's round(fraction * n_u) latest rows (ties: higher item id); one row stays."""
    sizes = holdout_sizes(np.bincount(users, minlength=n_users), fraction)
    return top_per_user(users, sizes, times, items)


def select_test_rows(
    spec: SplitSpec,
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    times: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Rows to hold out as test; users with fewer than two rows stay train-only."""
    if spec.kind == RANDOM:
        return random_holdout(users, n_users, spec.fraction, rng)
    if spec.kind == TEMPORAL:
        return latest_holdout(users, items, times, n_users, spec.fraction)
    sizes = (np.bincount(users, minlength=n_users) >= 2).astype(np.int64)
    latest = (times, items) if times is not None else (rng.random(len(users)),)
    return top_per_user(users, sizes, *latest)
