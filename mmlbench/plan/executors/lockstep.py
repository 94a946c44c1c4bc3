"""The lockstep executor (`--backend lockstep`): runs that can share a step train together.

The configs are grouped by `runs.build.group_key` (same data, model, batch and
negatives; any loss, seed, lr, l2, dropout, clipping); each group trains in this process as
one batched step and each of its runs is stored as alone, its row saying `execution =
lockstep`. Configs that fit no group (another model, a sampler needing the model or the
batch) and groups of one go through the single-run path, `run_task`. A run interrupted
alone or in a group resumes in its group from its checkpoint (runs.group).
A group holds K runs' tables and step tensors at once, so one larger than the device's
memory allows (runs.preflight.lockstep_size_limit) is cut into groups that fit.
Groups run one after another, in the order of their first config; the entries come back
in the order given.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.errors import MMLBenchError
from mmlbench.plan.executors import BackendOptions
from mmlbench.plan.executors.base import CANCELLED, CLAIMED, SweepEntry, run_task
from mmlbench.runs.options import RunOutcome, TrainOptions
from mmlbench.runs.preflight import lockstep_size_limit
from mmlbench.store import claims


def make(settings: BackendOptions) -> LockstepExecutor:
    """This process: runs of one shape trained together in one batched step (engine.lockstep)."""
    return LockstepExecutor()


class LockstepExecutor:
    """Groups the configs and trains each group in one process; Ctrl-C stores the group as interrupted."""

    def run(self, configs: list[RunConfig], options: TrainOptions) -> list[SweepEntry]:
        entries: dict[int, SweepEntry] = {}
        try:
            for positions in plan_groups(configs, lambda config: lockstep_size_limit(config, options.device, options.data_dir)):
                for position, entry in zip(positions, _run_group([configs[p] for p in positions], options)):
                    entries[position] = entry
                if any(entry.status == store.STATUS_INTERRUPTED for entry in entries.values()):
                    break
        except KeyboardInterrupt:  # between two groups, or while storing one
            pass
        return [entries.get(position, SweepEntry(config, state=CANCELLED)) for position, config in enumerate(configs)]


def plan_groups(configs: list[RunConfig], size_limit: Callable[[RunConfig], int | None] = lambda _: None) -> list[list[int]]:
    """Positions of the configs, grouped: one list per group, in the order of first appearance.

    A group larger than `size_limit` of its first config (the runs that fit in the device's
    memory at once) is cut into consecutive groups of at most that many runs.
    """
    from mmlbench.runs.build import group_key  # the engine imports torch

    groups: dict[object, list[int]] = {}
    for position, config in enumerate(configs):
        try:
            key = group_key(config.resolved())
        except MMLBenchError:
            key = None  # run_task reports the error
        if key is None:
            key = ("alone", position)
        groups.setdefault(key, []).append(position)
    planned = []
    for positions in groups.values():
        limit = size_limit(configs[positions[0]].resolved()) if len(positions) > 1 else None
        step = limit or len(positions)
        planned += [positions[start : start + step] for start in range(0, len(positions), step)]
    return planned


def _run_group(configs: list[RunConfig], options: TrainOptions) -> list[SweepEntry]:
    if len(configs) == 1:
        return [run_task(configs[0], options)]
    from mmlbench.runs.group import train_group

    try:
        outcomes = train_group(configs, options)
    except KeyboardInterrupt:  # outside the fit, which stores the runs itself
        return [SweepEntry(c, error="interrupted before the run was stored", state=store.STATUS_INTERRUPTED) for c in configs]
    except store.StoreUnwritable:
        raise
    except Exception as exc:  # noqa: BLE001 - loading the data, ...: every run of the group failed with it
        return [_failed(config, exc) for config in configs]
    return [_entry(config, outcome) for config, outcome in zip(configs, outcomes)]


def _entry(config: RunConfig, outcome: RunOutcome | BaseException) -> SweepEntry:
    if isinstance(outcome, RunOutcome):
        return SweepEntry(config, outcome)
    if isinstance(outcome, claims.ClaimedElsewhere):
        return SweepEntry(config, error=str(outcome), state=CLAIMED)
    return _failed(config, outcome)


def _failed(config: RunConfig, exc: BaseException) -> SweepEntry:
    text = "".join(traceback.format_exception(exc))
    message = str(exc) if isinstance(exc, MMLBenchError) else f"{type(exc).__name__}: {exc}"
    return SweepEntry(config, error=message, traceback=text)
