"""Generic interaction tables (CSV, TSV, Parquet): read, deduplicate, filter ratings, k-core, remap ids."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mmlbench.data.splits import SplitSpec
from mmlbench.errors import MMLBenchError

_SEPARATORS = {".csv": ",", ".tsv": "\t"}
_COMPRESSED = {".gz", ".bz2", ".xz", ".zst", ".zip"}
_PARQUET = {".parquet", ".pq"}
FORMATS = "csv, tsv or parquet (csv/tsv may be compressed: .csv.gz, ...)"


@dataclass(frozen=True)
class GenericOptions:
    """Which columns hold what, and how rows are filtered. Checked before any data is read."""

    user_col: str
    item_col: str
    split: SplitSpec
    rating_col: str | None = None
    min_rating: float | None = None
    time_col: str | None = None
    min_user_interactions: int = 1
    min_item_interactions: int = 1

    def __post_init__(self) -> None:
        if self.min_rating is not None and self.rating_col is None:
            raise MMLBenchError("--min-rating needs --rating-col (the column to compare)")
        if self.split.needs_time and self.time_col is None:
            raise MMLBenchError(f"--split {self.split} needs --time-col (the column giving each row's time)")
        for flag, value in (
            ("--min-user-interactions", self.min_user_interactions),
            ("--min-item-interactions", self.min_item_interactions),
        ):
            if value < 1:
                raise MMLBenchError(f"{flag} must be at least 1, got {value}")

    def columns(self) -> list[str]:
        named = (self.user_col, self.item_col, self.rating_col, self.time_col)
        return list(dict.fromkeys(c for c in named if c is not None))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "split": str(self.split)}


@dataclass(frozen=True)
class Table:
    """Interactions with ids as 0-based codes, and the original id of every code."""

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray | None
    user_ids: np.ndarray
    item_ids: np.ndarray
    ratings: np.ndarray | None = None  # only kept while --min-rating still has to be applied


def _separator(path: Path) -> str | None:
    """The CSV separator for a text file, None for Parquet; an error for other extensions."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _PARQUET:
        return None
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSED:
        suffixes.pop()
    if suffixes and suffixes[-1] in _SEPARATORS:
        return _SEPARATORS[suffixes[-1]]
    raise MMLBenchError(f"cannot tell the format of {path.name} from its extension; use {FORMATS}")


def check_input(path: Path) -> None:
    """Fail early on a missing file or an extension we cannot read."""
    _separator(path)
    if not path.exists():
        raise MMLBenchError(f"input file {path} not found")


def read_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read only `columns` of a CSV/TSV/Parquet file; missing columns name the available ones.

    A header naming a column twice, and a CSV row with more or fewer fields than the header,
    are refused: which value is whose cannot be told (pandas' own reader would silently take
    the first of two columns and drop a row's extra fields when it reads only some columns).
    """
    sep = _separator(path)
    try:
        available = _header(path, sep)
        duplicated = sorted({name for name in available if available.count(name) > 1})
        if duplicated:
            raise MMLBenchError(f"the header of {path.name} names column(s) {', '.join(map(repr, duplicated))} more than once")
        missing = [c for c in columns if c not in available]
        if missing:
            raise MMLBenchError(
                f"column(s) {', '.join(map(repr, missing))} not in {path.name}; "
                f"available: {', '.join(map(str, available))}"
            )
        if sep is None:
            return pd.read_parquet(path, columns=columns)
        return _read_text(path, sep, columns)
    except pd.errors.EmptyDataError:
        raise MMLBenchError(f"{path} is empty") from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pa.ArrowException) as exc:
        raise MMLBenchError(f"cannot read {path}: {' '.join(str(exc).split())}") from None


def _header(path: Path, sep: str | None) -> list[str]:
    """The column names as written (pandas would rename a second 'user' to 'user.1')."""
    if sep is None:
        return list(pq.read_schema(path).names)
    return [str(name) for name in pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str).iloc[0]]


def _read_text(path: Path, sep: str, columns: list[str]) -> pd.DataFrame:
    """pyarrow's reader (a row of the wrong length is an error naming it), every column read as
    text and then as numbers where all its values are numbers, as pandas' reader infers them."""
    frame = pd.read_csv(path, sep=sep, usecols=columns, engine="pyarrow", dtype=str)
    return pd.DataFrame({column: _numbers_if_all(frame[column]) for column in columns})


def _numbers_if_all(values: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(values)
    except (ValueError, TypeError):
        return values.astype(object)


def _check_complete(frame: pd.DataFrame, column: str) -> None:
    missing = frame[column].isna().to_numpy()
    if missing.any():
        count, first = int(missing.sum()), int(np.argmax(missing)) + 1
        raise MMLBenchError(f"column '{column}' is empty in {count} row(s) (first: data row {first})")


def _time_key(values: pd.Series, column: str) -> np.ndarray:
    """Numbers, dates or date strings as one sortable numeric key per row."""
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(dtype=np.int64)  # not float: epoch nanoseconds need all 64 bits
    if pd.api.types.is_float_dtype(values):
        return values.to_numpy(dtype=np.float64)
    if not pd.api.types.is_datetime64_any_dtype(values):
        try:
            values = pd.to_datetime(values, utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError):
            message = f"time column '{column}' holds values that are neither numbers nor dates"
            raise MMLBenchError(message) from None
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert(None)
    return values.to_numpy().astype("datetime64[ns]").astype(np.int64)


def _rating_values(frame: pd.DataFrame, options: GenericOptions) -> np.ndarray | None:
    """The ratings `--min-rating` compares, or None when there is no minimum."""
    if options.min_rating is None:
        return None
    ratings = frame[options.rating_col]
    if not pd.api.types.is_numeric_dtype(ratings) or pd.api.types.is_bool_dtype(ratings):
        raise MMLBenchError(f"rating column '{options.rating_col}' is not numeric")
    return ratings.to_numpy()


def load_table(path: Path, options: GenericOptions) -> Table:
    """Read the file and code users and items in sorted original-id order (ratings not yet applied)."""
    frame = read_columns(path, options.columns())
    if frame.empty:
        raise MMLBenchError(f"{path.name} has no interactions")
    compared = options.rating_col if options.min_rating is not None else None
    for column in (options.user_col, options.item_col, options.time_col, compared):
        if column is not None:
            _check_complete(frame, column)
    ratings = _rating_values(frame, options)
    users, user_ids = pd.factorize(frame[options.user_col], sort=True)
    items, item_ids = pd.factorize(frame[options.item_col], sort=True)
    times = _time_key(frame[options.time_col], options.time_col) if options.time_col else None
    return Table(users, items, times, np.asarray(user_ids), np.asarray(item_ids), ratings)


def filter_ratings(table: Table, options: GenericOptions) -> Table:
    """Keep rows rated >= --min-rating. Run it after `deduplicate`, so a pair's latest rating decides."""
    if table.ratings is None:
        return table
    kept = _subset(table, np.flatnonzero(table.ratings >= options.min_rating))
    if not len(kept.users):
        raise MMLBenchError(f"no interaction has {options.rating_col} >= {options.min_rating:g}")
    return kept


def deduplicate(table: Table) -> tuple[Table, int]:
    """One row per (user, item), keeping the latest if there are times; rows end sorted by user, item."""
    keys = table.users.astype(np.int64) * len(table.item_ids) + table.items
    order = np.lexsort((table.times, keys)) if table.times is not None else np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    last_of_key = np.concatenate((sorted_keys[1:] != sorted_keys[:-1], [True]))
    kept = order[last_of_key]
    return _subset(table, kept), len(keys) - len(kept)


def _subset(table: Table, rows: np.ndarray) -> Table:
    times = table.times[rows] if table.times is not None else None
    ratings = table.ratings[rows] if table.ratings is not None else None
    return Table(table.users[rows], table.items[rows], times, table.user_ids, table.item_ids, ratings)


def k_core(table: Table, min_user: int, min_item: int) -> tuple[Table, int]:
    """Drop users and items below their minimum count, repeatedly, until none is; returns passes."""
    keep = np.ones(len(table.users), dtype=bool)
    passes = 0
    while True:
        user_counts = np.bincount(table.users[keep], minlength=len(table.user_ids))
        item_counts = np.bincount(table.items[keep], minlength=len(table.item_ids))
        too_small = keep & ((user_counts[table.users] < min_user) | (item_counts[table.items] < min_item))
        if not too_small.any():
            return _subset(table, np.flatnonzero(keep)), passes
        keep &= ~too_small
        passes += 1


def compact_ids(table: Table) -> Table:
    """Renumber the remaining users and items 0..n-1, keeping the sorted order of original ids."""
    user_codes, users = np.unique(table.users, return_inverse=True)
    item_codes, items = np.unique(table.items, return_inverse=True)
    return Table(
        users, items, table.times, table.user_ids[user_codes], table.item_ids[item_codes], table.ratings
    )
