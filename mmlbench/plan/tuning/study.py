"""One Optuna study per cell, kept in a journal file of the run store: its name, sampler, pruner, budget.

Storage: `<results>/studies/<study>.journal`, Optuna's JournalFileBackend. No extra dependency
(SQLite's storage needs SQLAlchemy), append-only (a kill -9 loses at most the line being written;
`open_study` cuts such a partial last line off before reading), and its lock, a link made
atomically, works on the network filesystems a cluster's shared store lives on. A journal that
cannot be read is one line naming the file; the runs of its trials stay in the store.

Name: `<dataset>-<model>-<loss>-n<negatives>[-<sampler>]-<hash8>`, the hash over the cell's whole
config (its seed and data fingerprint included), its search space and the pruner: the same command
finds the same study, and a changed space or setting starts another.

Determinism: each trial is proposed by a TPE sampler seeded afresh from the cell's seed and the
trial's place in the budget (`budget_index`: the trials before it, less those given back), and
TPE's only other input is the history in the journal: so the same command proposes the same
trials, also after an interruption (with --jobs or Ray, trials asked while others are in flight
see a history that depends on timing, except the random start-up ones).

Budget: `trials` finished trials per study, counted over every process tuning it, asked for under
a lock file beside the journal so that processes sharing the study never overshoot it. A trial in
flight whose process is gone (this host's process killed, or the earlier try of a retried Ray task)
is given back: failed and marked so, its parameters enqueued again, its place in the budget kept,
its run resumed from its checkpoint by whichever process asks next.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, Trial, TrialState

from mmlbench.config import RunConfig
from mmlbench.config_checks import value_type
from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import is_disk_full
from mmlbench.plan.tuning.budget import TuneSettings
from mmlbench.plugins.search import Choices, Dimension, Range
from mmlbench.store import StoreUnwritable
from mmlbench.store.claims import process_gone, process_start

optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial is ours to print

STUDIES_DIR = "studies"
SUFFIX = ".journal"
GIVEN_BACK = "given_back"  # user attribute of a trial failed in flight and enqueued again
OWNER = "owner"  # who runs a trial: host, pid, its start time, and the asker's token
MEDIAN_STARTUP, MEDIAN_WARMUP = 3, 2  # no pruning before 3 trials finished, nor at epochs 1-2


@dataclass(frozen=True)
class Cell:
    """One cell of a tune: its base config (resolved), what it searches, its study's name, the budget."""

    config: RunConfig
    space: dict[str, Dimension]
    name: str
    settings: TuneSettings
    fingerprint: str = ""  # of the processed data the study was named with (a Ray worker checks its own against it)


def study_name(config: RunConfig, fingerprint: str, space: dict[str, Dimension], pruner: str) -> str:
    payload = json.dumps({"config": config.hash(fingerprint), "space": {k: _canonical(v) for k, v in space.items()},
                          "pruner": pruner}, sort_keys=True)  # fmt: skip
    sampler = "" if config.sampler == RunConfig.sampler else f"-{config.sampler}"
    label = f"{config.dataset}-{config.model}-{config.loss}-n{config.negatives}{sampler}"
    return f"{label}-{hashlib.sha256(payload.encode()).hexdigest()[:8]}"


def _canonical(dimension: Dimension) -> list[Any]:
    if isinstance(dimension, Range):
        return ["range", dimension.low, dimension.high, dimension.log]
    return ["choices", [_text(value) for value in dimension.values]]


def _text(value: Any) -> Any:
    """A choice as Optuna holds it: a list setting's value (MMCL's margins) as comma-joined text."""
    return ",".join(repr(v) for v in value) if isinstance(value, tuple) else value


def journal_path(results_dir: Path, name: str) -> Path:
    return Path(results_dir) / STUDIES_DIR / f"{name}{SUFFIX}"


def distributions(space: dict[str, Dimension]) -> dict[str, BaseDistribution]:
    found: dict[str, BaseDistribution] = {}
    for name, dimension in space.items():
        if isinstance(dimension, Choices):
            found[name] = CategoricalDistribution([_text(value) for value in dimension.values])
        elif value_type(name) is int:
            found[name] = IntDistribution(int(dimension.low), int(dimension.high), log=dimension.log)
        else:
            found[name] = FloatDistribution(dimension.low, dimension.high, log=dimension.log)
    return found


def decode(space: dict[str, Dimension], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as settings: a list setting's choice back from its text."""
    settings = {}
    for name, value in params.items():
        dimension = space[name]
        if isinstance(dimension, Choices):
            value = next(choice for choice in dimension.values if _text(choice) == value)
        settings[name] = value
    return settings


def derived_seed(seed: int, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:4], "big")


class SeededTPE(optuna.samplers.BaseSampler):
    """TPE, seeded afresh for each trial from the cell's seed and the trial's place in the budget."""

    def __init__(self, seed: int, startup: int) -> None:
        self.seed, self.startup = seed, startup
        self.tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        seed = derived_seed(self.seed, budget_index(study.get_trials(deepcopy=False), trial.number))
        self.tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.startup)
        self.tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: BaseDistribution) -> Any:
        return self.tpe.sample_independent(study, trial, name, distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self.tpe.after_trial(study, trial, state, values)


def budget_index(trials: list[FrozenTrial], number: int) -> int:
    """The place of trial `number` in the budget: the trials before it that were not given back."""
    return sum(1 for trial in trials if trial.number < number and not trial.user_attrs.get(GIVEN_BACK))


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP, n_warmup_steps=MEDIAN_WARMUP)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs), reduction_factor=3)
    return optuna.pruners.NopPruner()


class CellStudy:
    """A cell's study opened from its journal: ask under the budget, give back, and read it."""

    def __init__(self, cell: Cell, results_dir: Path) -> None:
        self.cell, self.path = cell, journal_path(results_dir, cell.name)
        self.storage = _storage(self.path)
        startup = max(1, min(10, cell.settings.trials // 2))
        try:
            self.study = optuna.create_study(
                storage=self.storage, study_name=cell.name, direction="maximize", load_if_exists=True,
                sampler=SeededTPE(cell.config.seed, startup), pruner=make_pruner(cell.settings.pruner, cell.config.epochs),
            )
        except OSError as exc:
            raise _unwritable(self.path, exc) from exc
        self.study_id = self.storage.get_study_id_from_name(cell.name)

    def trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def ask(self, token: str, gone: Collection[str] = ()) -> Trial | None:
        """The next trial of the budget, owned by this process (`token`), or None when the budget is spent.

        Trials in flight whose owner is gone (its process; or its token is `token` or in `gone`) are given back first.
        """
        with _locked(self.path):
            for trial in self.in_flight():
                if _owner_gone(trial.user_attrs.get(OWNER), {token, *gone}):
                    self.give_back(trial)
            trials = self.trials()
            counted = [t for t in trials if not t.user_attrs.get(GIVEN_BACK)]
            if len(counted) >= self.cell.settings.trials and not any(t.state == TrialState.WAITING for t in trials):
                return None
            trial = self.study.ask(distributions(self.cell.space))
            trial.set_user_attr(OWNER, {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid()), "token": token})
            return trial

    def in_flight(self) -> list[FrozenTrial]:
        """The trials being trained now, here or by another process."""
        return self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def give_back(self, trial: FrozenTrial | Trial) -> None:
        """Fail a trial in flight and enqueue its parameters again: it keeps its place in the budget."""
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        self.storage.set_trial_user_attr(trial_id, GIVEN_BACK, True)
        self.study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        self.study.enqueue_trial(trial.params, user_attrs={"given_back_by": trial.number})


def new_token() -> str:
    return uuid.uuid4().hex


def _owner_gone(owner: Any, tokens: set[str]) -> bool:
    if not isinstance(owner, dict):  # asked, then killed before it was marked (both under the lock)
        return True
    if owner.get("token") in tokens:
        return True
    return process_gone(str(owner.get("host")), int(owner.get("pid", 0)), owner.get("start"))


def _storage(path: Path) -> JournalStorage:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _cut_partial_line(path)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    except Exception as exc:  # noqa: BLE001 - Optuna raises several types for a journal it cannot replay
        raise MMLBenchError(
            f"the study journal {path} cannot be read ({type(exc).__name__}: {exc}); move it aside to start that "
            "study over (its trials' runs stay in the store, and a trial of the same settings reuses its run)"
        ) from None


def _cut_partial_line(path: Path) -> None:
    """A kill -9 during a write leaves a last line without its newline: cut it (that operation never happened).

    Under the journal's own lock (the one Optuna's writers take), so a line another process is
    writing now is never taken for one cut short.
    """
    if not path.is_file():
        return
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        _cut(path)
    finally:
        lock.release()


def _cut(path: Path) -> None:
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(max(0, size - (1 << 20)))
        tail = handle.read()
        if tail.endswith(b"\n"):
            return
        handle.truncate(size - len(tail) + tail.rfind(b"\n") + 1)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The budget lock of a study's journal (a file made with O_EXCL; one left by a killed process expires in 30 s)."""
    lock = JournalFileOpenLock(f"{path}.budget")
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _unwritable(path: Path, exc: OSError) -> StoreUnwritable:
    reason = "disk full" if is_disk_full(exc) else exc.strerror or str(exc)
    return StoreUnwritable(f"cannot write the study journal {path}: {reason}")
