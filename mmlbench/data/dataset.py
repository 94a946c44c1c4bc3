"""Processed interactions loaded onto the device: training pairs and per-split CSR indexes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mmlbench.data import registry
from mmlbench.data.processed import META_FILE, SPLITS, read_interactions, read_meta
from mmlbench.errors import MMLBenchError, closest
from mmlbench.paths import processed_dir


@dataclass(frozen=True)
class SplitIndex:
    """One split's interactions as CSR over users, plus sorted user*n_items+item keys."""

    indptr: Tensor  # [n_users + 1]
    items: Tensor  # [nnz], grouped by user
    keys: Tensor  # [nnz], sorted

    @property
    def size(self) -> int:
        return int(self.items.numel())

    def counts(self) -> Tensor:
        return self.indptr[1:] - self.indptr[:-1]

    def users(self) -> Tensor:
        """Users with at least one interaction in this split."""
        return torch.nonzero(self.counts() > 0).flatten()

    def pairs_of(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """(row in `users`, item) for every interaction of the given users, vectorised."""
        starts = self.indptr[users]
        counts = self.indptr[users + 1] - starts
        rows = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), counts)
        offsets = torch.arange(rows.numel(), device=users.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        return rows, self.items[starts[rows] + offsets]


@dataclass(frozen=True)
class InteractionData:
    """A processed dataset on one device."""

    name: str
    n_users: int
    n_items: int
    fingerprint: str
    splits: dict[str, SplitIndex]
    train_users: Tensor  # [n_train] training pairs, user side
    train_items: Tensor  # [n_train] training pairs, item side

    @property
    def protocol(self) -> str:
        """'validation' when a validation split exists, else the paper's 'test-as-validation'."""
        return "validation" if self.splits["valid"].size else "test-as-validation"

    @property
    def selection_split(self) -> str:
        return "valid" if self.splits["valid"].size else "test"

    def item_counts(self) -> Tensor:
        return torch.bincount(self.train_items, minlength=self.n_items)

    def history(self, length: int) -> tuple[Tensor, Tensor]:
        """Each user's first `length` training items, padded: (index [U, L], mask [U, L])."""
        train = self.splits["train"]
        positions = torch.arange(length, device=train.items.device)
        counts = train.counts()
        mask = positions.unsqueeze(0) < counts.unsqueeze(1)
        gather_at = (train.indptr[:-1].unsqueeze(1) + positions).clamp_max(max(train.size - 1, 0))
        index = torch.where(mask, train.items[gather_at], torch.zeros_like(gather_at))
        return index, mask


def require_processed(name: str, data_dir: Path | None) -> Path:
    """The processed folder of `name`, or an error naming the command that makes it."""
    folder = processed_dir(name, data_dir)
    if (folder / META_FILE).is_file():
        return folder
    missing = f"dataset '{name}' is not preprocessed in {folder.parent.parent}"
    if name not in registry.registered_names():  # nothing to download: the user's own data
        hint = closest(name, registry.registered_names())
        registered = f"did you mean '{hint}'? " if hint else ""
        raise MMLBenchError(
            f"{missing} and is not a registered dataset ({registered}registered: {', '.join(registry.registered_names())}); "
            f"make it from your own file with `mmlbench preprocess --input FILE --name {name} --user-col U --item-col I --split leave-one-out`"
        )
    source = registry.SLICES[name].source if name in registry.SLICES else name
    raw_there = (processed_dir(source, data_dir).parent / "raw").is_dir()
    raise MMLBenchError(
        f"{missing}: run `mmlbench preprocess {name}`"
        + (" first" if raw_there else f" (after `mmlbench download {source}`)")
    )


def load_dataset(name: str, data_dir: Path | None, device: torch.device) -> InteractionData:
    """Load `<data-dir>/<name>/processed` onto `device`, or say which command makes it."""
    folder = require_processed(name, data_dir)
    meta = read_meta(folder)
    try:
        frame = read_interactions(folder)
    except MMLBenchError:
        raise
    except Exception as exc:  # a damaged Parquet file: pyarrow raises several types
        raise MMLBenchError(f"cannot read the processed data in {folder}: {exc}; rerun `mmlbench preprocess {name} --force`") from None
    n_users, n_items = int(meta["n_users"]), int(meta["n_items"])
    users = frame["user"].to_numpy(np.int64)
    items = frame["item"].to_numpy(np.int64)
    split = frame["split"].astype(str).to_numpy()
    if len(users) and (users.min() < 0 or users.max() >= n_users or items.min() < 0 or items.max() >= n_items):
        raise MMLBenchError(f"{folder} has ids outside meta.json's {n_users} users / {n_items} items; rerun preprocess --force")
    splits = {name_: _split_index(users[split == name_], items[split == name_], n_users, n_items, device) for name_ in SPLITS}
    if splits["train"].size == 0:
        raise MMLBenchError(f"dataset '{name}' has no training interactions")
    train = splits["train"]
    train_users = torch.repeat_interleave(torch.arange(n_users, device=device), train.counts())
    return InteractionData(name, n_users, n_items, meta.get("fingerprint", ""), splits, train_users, train.items)


def _split_index(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, device: torch.device) -> SplitIndex:
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    keys = users * n_items + items
    as_tensor = lambda array: torch.from_numpy(np.ascontiguousarray(array)).to(device)  # noqa: E731
    return SplitIndex(as_tensor(indptr), as_tensor(items), as_tensor(keys))
