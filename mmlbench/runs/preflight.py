"""What a run checks before anything is written: its config, device and data together, and whether
its training step fits in the device's memory (`prepare` does all of it and loads the data).

Without the memory check, `--negatives 1e9` or `--embedding-dim 1e9` end in a raw allocator error (and a
failed run folder) at the first step. The estimate is deliberately rough and on the high
side of what a step holds at once; the memory it is compared with is the device's total
(not what happens to be free now), so a run that could fit is never refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mmlbench.config import ALL, RunConfig
from mmlbench.data.dataset import InteractionData, load_dataset, require_processed
from mmlbench.data.processed import read_meta
from mmlbench.engine.allocator import reuse_freed_memory
from mmlbench.engine.device import check_precision, resolve_device
from mmlbench.errors import MMLBenchError
from mmlbench.runs.build import specs
from mmlbench.runs.options import TrainOptions

_FLOAT, _INDEX = 4, 8  # bytes: float32 values, int64 indices
_TABLE_COPIES = 8  # weights, gradient, Adam's two moments, the best weights, the resume snapshot (weights, moments)
_GATHERED_COPIES = 3  # gathered rows [B, N+1, d], their gradient, one temporary
_PER_SCORE = 6 * _INDEX  # per (user, item) score: sampled index, keys, scores, weights
# --negatives all scores the dense [B, I] matrix and gathers no rows: per entry about 16 float32
# [B, I] arrays (the product, the positive left out, the loss's temporaries, their gradients).
_DENSE_PER_SCORE = 16 * _FLOAT
_CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")


def prepare(config: RunConfig, options: TrainOptions) -> tuple[RunConfig, torch.device, InteractionData]:
    """Resolve and check the config, pick the device, load the data, check them together."""
    config = config.resolved()
    device = resolve_device(options.device)
    check_precision(config.precision, device)
    if device.type == "cpu":
        reuse_freed_memory()
    data = load_dataset(config.dataset, options.data_dir, device)
    check_against_data(config, data)
    check_fits(config, data.n_users, data.n_items, device)
    return config, device, data


def check_against_data(config: RunConfig, data: InteractionData) -> None:
    """Settings that only the data can rule out."""
    if config.negatives == ALL and data.n_items < 2:
        raise MMLBenchError(f"--negatives all needs at least 2 items; '{data.name}' has {data.n_items}")
    if config.sampler == "uniform-exclude-pos":
        most = int(data.splits["train"].counts().max())
        if config.negatives > data.n_items - most:
            raise MMLBenchError(
                f"--negatives {config.negatives} is more than the {data.n_items - most} items left to the "
                f"most active user of '{data.name}' once its positives are excluded"
            )


def training_bytes(config: RunConfig, n_users: int, n_items: int) -> int:
    """About the most memory one training step of `config` holds at once."""
    dim = config.embedding_dim
    tables = (n_users + n_items) * dim * _FLOAT * _TABLE_COPIES
    if config.negatives == ALL:
        step = config.batch_size * n_items * _DENSE_PER_SCORE
    else:
        step = config.batch_size * (config.negatives + 1) * (dim * _FLOAT * _GATHERED_COPIES + _PER_SCORE)
    history = 0
    model = specs(config).model
    if model.needs_history:  # SimpleX: padded histories on the device, gathered per batch
        history = n_users * config.history_len * (_INDEX + 1)
        history += config.batch_size * config.history_len * dim * _FLOAT * _GATHERED_COPIES
    graph = 0
    if model.needs_graph:  # LightGCN: every layer's [U + I, d] output and its gradient
        graph = (config.layers + 1) * 2 * (n_users + n_items) * dim * _FLOAT
    return tables + step + history + graph


def device_bytes(device: torch.device) -> int:
    """The device's total memory: the GPU's, or the machine's RAM (within a cgroup limit)."""
    if device.type == "cuda":  # the properties, not mem_get_info: no CUDA context in this process
        return int(torch.cuda.get_device_properties(device).total_memory)
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        limit = _CGROUP_LIMIT.read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def check_fits(config: RunConfig, n_users: int, n_items: int, device: torch.device) -> None:
    """One line naming the size options when a step of `config` cannot fit on `device`."""
    needed = training_bytes(config, n_users, n_items)
    available = device_bytes(device)
    if needed > available:
        shape = f" (a {config.batch_size:,} x {n_items:,} score matrix)" if config.negatives == ALL else ""
        raise MMLBenchError(
            f"--negatives {config.negatives}{shape}, --batch-size {config.batch_size} and --embedding-dim "
            f"{config.embedding_dim} need about {_gib(needed)} per training step on '{config.dataset}' "
            f"({n_users:,} users, {n_items:,} items), more than the {_gib(available)} of {device.type}: "
            "lower one of them"
        )


def lockstep_size_limit(config: RunConfig, device_name: str, data_dir: Path | None) -> int | None:
    """How many runs of `config`'s shape one lockstep group may stack on the device, or None
    when the data or device is not known yet (its runs will say why). Each run of a group
    holds its own tables, Adam moments and step tensors, so a group needs about K times a run."""
    try:
        device = resolve_device(device_name)
    except MMLBenchError:
        return None
    sizes = _dataset_sizes(config.dataset, data_dir)
    if sizes is None:
        return None
    return max(1, device_bytes(device) // training_bytes(config, *sizes))


def check_sweep_fits(configs: list[RunConfig], device_name: str, data_dir: Path | None) -> None:
    """check_fits (and check_precision) for every config before a sweep starts, from the
    datasets' meta.json. A dataset that is not processed (or unreadable) is left to its runs,
    which say what to do.
    """
    device = resolve_device(device_name)
    sizes: dict[str, tuple[int, int] | None] = {}
    for config in configs:
        check_precision(config.precision, device)
        if config.dataset not in sizes:
            sizes[config.dataset] = _dataset_sizes(config.dataset, data_dir)
        if sizes[config.dataset] is not None:
            check_fits(config, *sizes[config.dataset], device)


def _dataset_sizes(name: str, data_dir: Path | None) -> tuple[int, int] | None:
    try:
        meta = read_meta(require_processed(name, data_dir))
        return int(meta["n_users"]), int(meta["n_items"])
    except (MMLBenchError, KeyError, TypeError, ValueError):
        return None


def _gib(size: int) -> str:
    return f"{size / (1 << 30):,.1f} GiB"
