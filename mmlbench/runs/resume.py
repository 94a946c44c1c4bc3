"""Resume checkpoints: a run's whole training state at its last finished epoch.

Written to `<results>/runs/.<run_id>.resume/state.pt` (store.ids.resume_folder: hidden, so never read as a run)
through an atomic replace: a kill leaves the previous file whole. Re-running the same config
(same run id and config hash) continues from it; once the completed run's folder is written
it is removed. An interrupted or failed run keeps it. A full disk stops the sweep
(StoreUnwritable), and a first write cut short leaves no folder behind.

Verified before use: its sha256, hashed as it is written, goes to `state.sha256` beside it,
and torch.load checks nothing, so a damaged file would resume silently from wrong weights.
One that does not match, cannot be read, lacks a key or is not a file (`DamagedCheckpoint`)
stops that run before training, its stored row and checkpoint left as they were.

When (`Checkpoints`): after an epoch once `--checkpoint-every` seconds have passed since the
run's last write (0: after every epoch), and when the run stops short of completion (Ctrl-C,
SIGTERM, divergence, ...). Between writes the last epoch's state is kept in memory, a copy
taken on the device (`capture`), so such a stop loses nothing; a hard kill (SIGKILL, power)
loses at most the interval. Why: one write of a Gowalla-size MF run takes ~0.14 s (54 MB),
a lockstep group of 15 runs ~1.8 s, against GPU epochs of one to a few seconds.

Exactness: the state holds everything the next epoch reads — weights, Adam's moments and
step, the learning rate, the early-stopping state, the curve so far — and the random
generator states of the device, taken after the epoch's evaluation (which draws nothing)
and restored before the next epoch draws its permutation. On the CPU a resumed run is
bit-identical to an uninterrupted one. On CUDA the generator state is restored before the
resumed trainer captures its graph, so replays continue the same philox stream (not tested
here: no GPU in the test suite).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from mmlbench.console import info, warn
from mmlbench.engine.trainer import EpochLog, FitResult, Trainer
from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import atomic_file, is_disk_full, sha256_file, write_hashed, write_text_atomic
from mmlbench.store import StoreUnwritable
from mmlbench.store.ids import resumed_run

FORMAT = 1
STATE_FILE = "state.pt"
CHECKSUM_FILE = "state.sha256"  # one sha256 per line: state.pt's (while it is replaced, the new one's too)
KEYS = (
    "format", "config_hash", "device", "model", "optimizer", "rng", "epochs", "best_epoch", "best_value", "stale",
    "best_state", "best_is_current",
)  # fmt: skip


class DamagedCheckpoint(MMLBenchError):
    """A resume checkpoint that cannot be used as it is: never used, and the run is not trained."""

    @classmethod
    def at(cls, path: Path, why: str) -> DamagedCheckpoint:
        return cls(f"the resume checkpoint {path} {why}; not resumed: `--no-resume` starts the run over and replaces it")


def save(
    resume_folder: Path,
    trainer: Trainer,
    result: FitResult,
    config_hash: str,
    *,
    optimizer: dict[str, Any] | None = None,
    rng: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write the trainer's state after the epoch just finished (atomically), now."""
    write(resume_folder, capture(trainer, result, config_hash, optimizer=optimizer, rng=rng, snapshot=False))


def capture(
    trainer: Trainer,
    result: FitResult,
    config_hash: str,
    *,
    optimizer: dict[str, Any] | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    snapshot: bool = True,
) -> dict[str, Any]:
    """The trainer's state after the epoch just finished, as `write` stores it.

    `snapshot`: the weights and Adam's moments and steps, which the next epochs change in
    place, are copied (on their device), so the state stays this epoch's while training goes
    on; else only views into a larger storage are (`_owned`): for a state written at once.
    The rng states, the curve (`asdict`) and the best weights (replaced, never changed in
    place) are copies or safe to hold already.

    `optimizer` and `rng` stand in for the state dict of the trainer's optimizer and the
    device's generator states: a run trained in lockstep keeps both elsewhere and passes
    them as its run alone would have them (engine.lockstep.Member), so a checkpoint written
    either way resumes either way.
    """
    own = torch.Tensor.clone if snapshot else _owned
    best_is_current = bool(result.epochs) and result.best_epoch == result.epochs[-1].epoch
    optimizer = optimizer if optimizer is not None else trainer.step.optimizer.state_dict()
    return {
        "format": FORMAT,
        "config_hash": config_hash,
        "device": trainer.device.type,
        "model": {name: own(tensor) for name, tensor in trainer.model.state_dict().items()},
        "optimizer": {**optimizer, "state": {i: {k: own(v) for k, v in s.items()} for i, s in optimizer["state"].items()}},
        "rng": rng if rng is not None else _rng_states(trainer.device),
        "epochs": [dataclasses.asdict(log) for log in result.epochs],
        "best_epoch": result.best_epoch,
        "best_value": result.best_value,
        "stale": result.stale,
        # The epoch just evaluated is usually the best: its weights are the model's, not stored twice.
        "best_state": None if best_is_current else result.best_state,
        "best_is_current": best_is_current,
    }


def write(resume_folder: Path, state: dict[str, Any]) -> None:
    """Store a `capture`d state as the run's checkpoint (atomically) with its sha256; a full disk is StoreUnwritable.

    The checksum file lists the new sha256 and the current ones before the new file replaces
    the old, and only the new one after: a kill at any point leaves a state.pt that verifies.
    """
    path = resume_folder / STATE_FILE
    try:
        with atomic_file(path) as tmp:
            digest = write_hashed(tmp, lambda handle: torch.save(state, handle))
            _record(resume_folder, [digest, *_recorded(resume_folder)])
        _record(resume_folder, [digest])
    except (OSError, RuntimeError) as exc:
        if not is_disk_full(exc):
            raise
        if not path.is_file():
            discard(resume_folder)  # nothing usable in it: nothing partial left
        raise StoreUnwritable(f"disk full while writing {resumed_run(resume_folder)}'s resume checkpoint {path}") from exc


def _record(resume_folder: Path, digests: list[str]) -> None:
    write_text_atomic(resume_folder / CHECKSUM_FILE, "".join(f"{digest}\n" for digest in dict.fromkeys(digests)))


def _recorded(resume_folder: Path) -> list[str]:
    """The sha256s recorded for state.pt; none when the checksum file is missing or unreadable."""
    try:
        return (resume_folder / CHECKSUM_FILE).read_text(encoding="ascii").split()
    except (OSError, ValueError):
        return []


class Checkpoints:
    """When one run's state reaches its resume folder.

    `epoch_closed` (a Trainer's `on_checkpoint`) writes the epoch's state once `every` seconds
    have passed since the run's last write or its start (0: every epoch), and otherwise keeps
    a snapshot of it; `flush` writes that snapshot when the run stops short of completion,
    before its interrupted or failed row is stored. `capture(fit, snapshot)` is `capture`
    bound to the run (a run alone's trainer, or a lockstep member's, runs.group.capture_member).
    """

    def __init__(self, resume_folder: Path, every: float, capture: Callable[[FitResult, bool], dict[str, Any]]) -> None:
        self.folder, self.every, self._capture = resume_folder, every, capture
        self._unwritten: dict[str, Any] | None = None  # the last epoch's state when not on disk
        self._written_at = time.monotonic()

    def epoch_closed(self, fit: FitResult) -> None:
        self._unwritten = None  # the previous snapshot's memory freed before the next is taken
        due = time.monotonic() - self._written_at >= self.every
        self._unwritten = self._capture(fit, not due)
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the last epoch's state if it is not on disk yet.

        A write cut short by Ctrl-C leaves the state unwritten for the flush at the stop
        (not copied if it was due, but training has stopped: nothing changed it since).
        """
        if self._unwritten is None:
            return
        try:
            write(self.folder, self._unwritten)
        except Exception:
            self._unwritten = None  # not tried again at the stop: it would fail as this did
            raise
        self._unwritten, self._written_at = None, time.monotonic()


def load(resume_folder: Path, trainer: Trainer, config_hash: str) -> FitResult | None:
    """Put the trainer and the device's generators back in the saved state and return the fit so far; None: none saved."""
    state = read(resume_folder, trainer.device, config_hash)
    if state is None:
        return None
    with applying(resume_folder):
        _set_rng_states(state["rng"], trainer.device)
        return restore(state, trainer)


def read(resume_folder: Path, device: torch.device, config_hash: str) -> dict[str, Any] | None:
    """The saved state of this config once verified; None if none was saved. DamagedCheckpoint if it cannot be used."""
    path = resume_folder / STATE_FILE
    if not resume_folder.exists() and not resume_folder.is_symlink():
        return None
    if not resume_folder.is_dir():
        raise DamagedCheckpoint.at(resume_folder, "is not a folder")
    if not path.exists() and not path.is_symlink():
        return None  # a folder whose first write did not happen: nothing to resume
    if not path.is_file():
        raise DamagedCheckpoint.at(path, "is not a file")
    recorded = _recorded(resume_folder)
    if not recorded:
        raise DamagedCheckpoint.at(path, f"has no recorded sha256 ({CHECKSUM_FILE} is missing or unreadable)")
    if sha256_file(path) not in recorded:
        raise DamagedCheckpoint.at(path, "is damaged: its sha256 is not the one recorded when it was written")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for files it cannot read
        raise DamagedCheckpoint.at(path, f"cannot be read ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DamagedCheckpoint.at(path, "was written by another version of mmlbench")
    if state.get("config_hash") != config_hash:
        raise DamagedCheckpoint.at(path, "belongs to another config")
    missing = [key for key in KEYS if key not in state]
    if missing:
        raise DamagedCheckpoint.at(path, f"lacks {', '.join(missing)}")
    if state["device"] != device.type:
        warn(f"resuming on {device.type} a run started on {state['device']}: its random stream differs")
    return state


@contextlib.contextmanager
def applying(resume_folder: Path) -> Iterator[None]:
    """Putting a `read` state back into a run: a value of the wrong shape or type is a DamagedCheckpoint."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        why = f"does not fit this run ({type(exc).__name__}: {exc})"
        raise DamagedCheckpoint.at(resume_folder / STATE_FILE, why.splitlines()[0]) from None


def restore(state: dict[str, Any], trainer: Trainer) -> FitResult:
    """Weights and optimizer from a `read` state into the trainer, and the fit so far (the generators are the caller's)."""
    trainer.model.load_state_dict(state["model"])
    _load_optimizer(trainer.step.optimizer, state["optimizer"])
    best_state = state["best_state"]
    if state["best_is_current"]:
        best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    epochs = [EpochLog(**log) for log in state["epochs"]]
    return FitResult(best_state, state["best_epoch"], state["best_value"], epochs, stale=state["stale"])


def announce(run_id: str, resumed_from: int, *, quiet: bool) -> None:
    if resumed_from and not quiet:
        info(f"{run_id}: resuming after epoch {resumed_from} (--no-resume starts over)")


def discard(resume_folder: Path) -> None:
    """Remove the run's resume checkpoint, whatever lies at its path (a folder, or a file in its place)."""
    if resume_folder.is_dir() and not resume_folder.is_symlink():
        shutil.rmtree(resume_folder, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            resume_folder.unlink()


def _owned(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor, or a copy of it when it views a larger storage (a lockstep run's slice of
    the group's stacked tables): torch.save writes a view's whole storage."""
    return tensor if tensor.untyped_storage().nbytes() == tensor.nbytes else tensor.clone()


def _rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(states["cpu"].cpu())
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)


def _load_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Adam's moments, step and learning rate; this process's kernel flags (fused, capturable) kept."""
    current = optimizer.state_dict()["param_groups"]
    groups = [{**now, "lr": then["lr"]} for now, then in zip(current, saved["param_groups"], strict=True)]
    optimizer.load_state_dict({"state": saved["state"], "param_groups": groups})
