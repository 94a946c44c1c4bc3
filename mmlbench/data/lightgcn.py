"""Reader for the LightGCN/NGCF text format: one line per user, `user item item ...`.

Parsing is bulk numpy over the file's bytes (no per-token Python), about 0.1 s for
Yelp2018's train.txt. Only when a file holds something other than digits and whitespace
does a slow line-by-line pass run, to name the file, line and offending token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmlbench.data.processed import TEST, TRAIN, Interactions
from mmlbench.errors import MMLBenchError

TRAIN_FILE = "train.txt"
TEST_FILE = "test.txt"
_WHITESPACE = b" \t\n\r\x0b\x0c"  # what bytes.split() separates on
_ALLOWED = b"0123456789" + _WHITESPACE
_MAX_ID = np.iinfo(np.int32).max
_ITEM_BITS = 31  # ids fit in 31 bits, so (user << 31) | item is a unique int64 pair key


@dataclass(frozen=True)
class UserLines:
    """One parsed file: its (user, item) pairs, sorted and unique, and the users with a line."""

    name: str
    users: np.ndarray
    items: np.ndarray
    pair_lines: np.ndarray  # 1-based line number of each pair
    line_users: np.ndarray  # user id of every non-blank line, items or not
    duplicates_dropped: int
    first_duplicate_line: int | None

    @property
    def keys(self) -> np.ndarray:
        return (self.users << _ITEM_BITS) | self.items


def _token_text(token: bytes) -> str:
    text = token.decode("utf-8", errors="replace")
    return text if len(text) <= 40 else text[:37] + "..."


def _raise_first_bad_token(name: str, data: bytes) -> None:
    """Slow path: find the first token that is not a valid id and raise with its location."""
    for line_number, line in enumerate(data.split(b"\n"), start=1):
        for token in line.split():
            where = f"{name}:{line_number}"
            if token.startswith(b"-") and token[1:].isdigit():
                raise MMLBenchError(f"{where}: negative id {_token_text(token)}; ids must be >= 0")
            if not token.isdigit():
                raise MMLBenchError(f"{where}: '{_token_text(token)}' is not an integer id")
            if int(token) > _MAX_ID:
                raise MMLBenchError(f"{where}: id {_token_text(token)} is too large (max {_MAX_ID})")
    raise AssertionError(f"{name}: fast parser rejected the file but no bad token was found")


def _tokens(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Every integer in the file and the 0-based line it sits on."""
    if data.translate(None, _ALLOWED):
        _raise_first_bad_token(name, data)
    buf = np.frombuffer(data, dtype=np.uint8)
    is_digit = buf >= ord("0")  # every other allowed byte is whitespace, which sorts below '0'
    starts = np.flatnonzero(is_digit & ~np.concatenate(([False], is_digit[:-1])))
    if not len(starts):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # numpy's text parser: one C pass; sep=" " matches any run of whitespace, newlines included.
    values = np.fromstring(data[starts[0] :], dtype=np.int64, sep=" ")
    if len(values) != len(starts) or values.max() > _MAX_ID:
        _raise_first_bad_token(name, data)
    lines = np.searchsorted(np.flatnonzero(buf == ord("\n")), starts)
    return values, lines


def _check_unique_users(name: str, line_users: np.ndarray, line_numbers: np.ndarray) -> None:
    order = np.argsort(line_users, kind="stable")
    repeats = order[1:][line_users[order][1:] == line_users[order][:-1]]
    if len(repeats):
        second = repeats.min()
        user = line_users[second]
        first = line_numbers[np.flatnonzero(line_users == user)[0]]
        raise MMLBenchError(
            f"{name}:{line_numbers[second]}: user {user} already has a line (line {first}); "
            "each user must appear on one line per file"
        )


def parse_user_lines(name: str, data: bytes) -> UserLines:
    """Parse and validate one file's bytes; `name` is used in messages."""
    values, token_lines = _tokens(name, data)
    is_user = np.concatenate(([True], token_lines[1:] != token_lines[:-1]))[: len(values)]
    line_users = values[is_user]
    line_numbers = token_lines[is_user] + 1
    _check_unique_users(name, line_users, line_numbers)
    owner = np.cumsum(is_user) - 1
    users = line_users[owner[~is_user]]
    items = values[~is_user]
    keys, first = np.unique((users << _ITEM_BITS) | items, return_index=True)
    dropped = len(items) - len(keys)
    first_duplicate = None
    if dropped:
        repeated = np.ones(len(items), dtype=bool)
        repeated[first] = False
        first_duplicate = int(token_lines[~is_user][repeated].min() + 1)
    return UserLines(
        name=name,
        users=keys >> _ITEM_BITS,
        items=keys & ((1 << _ITEM_BITS) - 1),
        pair_lines=token_lines[~is_user][first] + 1,
        line_users=line_users,
        duplicates_dropped=dropped,
        first_duplicate_line=first_duplicate,
    )


def _check_disjoint(train: UserLines, test: UserLines) -> None:
    shared = np.isin(test.keys, train.keys, assume_unique=True)
    if shared.any():
        at = np.flatnonzero(shared)[np.argmin(test.pair_lines[shared])]
        raise MMLBenchError(
            f"{test.name}:{test.pair_lines[at]}: user {test.users[at]} item {test.items[at]} is "
            f"also in {train.name} ({int(shared.sum())} such pair(s)); test pairs must not be in train"
        )


def duplicate_warnings(*files: UserLines) -> list[str]:
    return [
        f"{f.name}: dropped {f.duplicates_dropped} duplicate item(s) within a user's line "
        f"(first on line {f.first_duplicate_line})"
        for f in files
        if f.duplicates_dropped
    ]


def combine(train: UserLines, test: UserLines) -> Interactions:
    """Validate a train/test pair of files and join them; ids are kept as they are."""
    for parsed in (train, test):
        if not len(parsed.items):
            raise MMLBenchError(f"{parsed.name} has no interactions")
    _check_disjoint(train, test)
    return Interactions(
        users=np.concatenate((train.users, test.users)),
        items=np.concatenate((train.items, test.items)),
        splits=np.repeat(np.array([TRAIN, TEST], dtype=np.int8), (len(train.items), len(test.items))),
        n_users=int(max(train.line_users.max(), test.line_users.max())) + 1,
        n_items=int(max(train.items.max(), test.items.max())) + 1,
    )
