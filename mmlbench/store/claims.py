"""Claims: a run being trained is marked in the store, so a second sweep does not train it too.

A claim is `<results>/runs/.claims/<config_hash>.claim`, a small JSON file naming the host, the
pid, the pid's process start time and the start time of the process training that config, and
what it trains (run id, dataset, model, loss, negatives, seed: `mmlbench runs` lists it as
running). It is written under a temporary name and hard-linked into place: the link fails when a
claim exists, so taking a claim is atomic (also on NFS, where a cluster backend's workers will
share the store) and never seen half-written.

A claim whose process is gone is stale and taken over: same host, and no process has its pid, or
the process that has it started at another time than the one recorded (the pid was reused: Linux,
/proc/<pid>/stat; a claim written before start times were recorded is matched by pid only). A
claim that cannot be read (empty, garbled, a folder) is never half-written, so it is damaged: it
is reported with its path and treated as stale. A claim from another host cannot be checked from
here: it holds until it is released or removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmlbench.console import warn
from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import is_disk_full
from mmlbench.store import StoreUnwritable, runs_dir

CLAIMS_DIR = ".claims"  # hidden: run-store readers skip it
SUFFIX = ".claim"

_reported_damaged: set[Path] = set()  # damaged claims already warned about: a sweep looks them up more than once


@dataclass(frozen=True)
class Claim:
    """Who trains a config: compared by holder, not by where the file lies or what it describes."""

    host: str
    pid: int
    since: str
    path: Path = field(compare=False)
    pid_start: int | None = None  # the pid's process start time (clock ticks after boot); None: not recorded
    damaged: str = ""  # why the file could not be read; such a claim is stale
    run: dict[str, Any] = field(default_factory=dict, compare=False)  # run_id, dataset, model, loss, negatives, seed

    def describe(self) -> str:
        if self.damaged:
            return f"an unreadable claim ({self.damaged})"
        return f"pid {self.pid} on {self.host} since {self.since}"


class ClaimedElsewhere(MMLBenchError):
    """Another live process is training this config: skip it, it is not a failure."""

    @classmethod
    def by(cls, claim: Claim) -> ClaimedElsewhere:
        return cls(f"being trained by {claim.describe()} (claim {claim.path}; remove it if that process is gone)")


def claim_path(results_dir: Path, config_hash: str) -> Path:
    return runs_dir(results_dir) / CLAIMS_DIR / f"{config_hash}{SUFFIX}"


def claim_run(results_dir: Path, config_hash: str, run: dict[str, Any] | None = None) -> Claim:
    """Claim the training of a config for this process; ClaimedElsewhere if a live process holds it.

    `run` describes it for `mmlbench runs` (run_id, dataset, model, loss, negatives, seed).
    Writing the claim is also the check that the results folder takes files, done before training:
    StoreUnwritable names the folder when it does not.
    """
    path = claim_path(results_dir, config_hash)
    mine = Claim(socket.gethostname(), os.getpid(), _now(), path, process_start(os.getpid()), run=dict(run or {}))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _claim(mine)
    except OSError as exc:
        reason = "disk full" if is_disk_full(exc) else exc.strerror or str(exc)
        raise StoreUnwritable(f"cannot write to the results folder {results_dir}: {reason}") from exc


def _claim(mine: Claim) -> Claim:
    path = mine.path
    for _ in range(3):  # a stale claim taken over, or a claim released while we looked: try again
        if _create(mine):
            return mine
        held = read_claim(path)
        if held is not None and not is_stale(held):
            raise ClaimedElsewhere.by(held)
        if held is not None:
            _remove_stale(held)
    held = read_claim(path)
    raise ClaimedElsewhere.by(held) if held else ClaimedElsewhere(f"claim {path} keeps changing hands")


def release_run(claim: Claim) -> None:
    """Remove a claim this process holds (a claim that is no longer ours is left alone)."""
    if read_claim(claim.path) == claim:
        claim.path.unlink(missing_ok=True)


@contextlib.contextmanager
def claimed(results_dir: Path, config_hash: str, run: dict[str, Any] | None = None) -> Iterator[Claim]:
    """Hold the claim of a config while the block runs, however it ends."""
    claim = claim_run(results_dir, config_hash, run)
    try:
        yield claim
    finally:
        release_run(claim)


def live_claim(results_dir: Path, config_hash: str) -> Claim | None:
    """The claim another live process holds on a config, if any (for a sweep's plan)."""
    held = read_claim(claim_path(results_dir, config_hash))
    return held if held is not None and not is_stale(held) else None


def live_claims(results_dir: Path) -> list[Claim]:
    """Every claim of the store held by a live process (or from another host), by file name."""
    folder = runs_dir(results_dir) / CLAIMS_DIR
    if not folder.is_dir():
        return []
    held = (read_claim(path) for path in sorted(folder.glob(f"*{SUFFIX}")) if not path.name.startswith("."))
    return [claim for claim in held if claim is not None and not is_stale(claim)]


def read_claim(path: Path) -> Claim | None:
    """The claim at `path`; None if there is none. One that cannot be read comes back `damaged`."""
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
        start = fields.get("pid_start")
        run = fields.get("run") or {}
        if not isinstance(run, dict) or not (start is None or isinstance(start, int)):
            raise TypeError("wrong types")
        return Claim(str(fields["host"]), int(fields["pid"]), str(fields["since"]), path, start, run=run)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return Claim("", 0, "", path, damaged=_unreadable(path, exc))


def _unreadable(path: Path, exc: Exception) -> str:
    """Why a claim file could not be read, the same each time it is read (claims compare by it)."""
    if path.is_dir():
        return "a folder"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, ValueError) and path.is_file() and path.stat().st_size == 0:
        return "empty"
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]}"
    return "not a claim's JSON"


def is_stale(claim: Claim) -> bool:
    """True when the claim's process is known to be gone, or the claim cannot be read.

    Gone: same host, and no process has its pid, or the one that has it started at another
    time than recorded (the pid was reused by an unrelated process).
    """
    if claim.damaged:
        _report_damaged(claim)
        return True
    return process_gone(claim.host, claim.pid, claim.pid_start)


def process_gone(host: str, pid: int, pid_start: int | None) -> bool:
    """Whether the process `pid` of `host` that started at `pid_start` (None: not recorded) is known to be gone.

    Only a process of this host can be checked: one of another host is never known to be gone.
    """
    if host != socket.gethostname():
        return False
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        pass
    started = process_start(pid) if pid_start is not None else None
    return started is not None and started != pid_start


def process_start(pid: int) -> int | None:
    """When the process `pid` started, in clock ticks after boot (field 22 of /proc/<pid>/stat); None off Linux or if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return int(stat[stat.rindex(")") + 2 :].split()[19])  # after "pid (comm) ", the fields from 3 on
    except (OSError, ValueError, IndexError):
        return None


def _report_damaged(claim: Claim) -> None:
    if claim.path not in _reported_damaged:
        _reported_damaged.add(claim.path)
        warn(f"the claim {claim.path} cannot be read ({claim.damaged}); treating it as stale")


def _create(claim: Claim) -> bool:
    tmp = claim.path.with_name(f".{claim.path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            fields = {"host": claim.host, "pid": claim.pid, "pid_start": claim.pid_start, "since": claim.since}
            json.dump({**fields, "run": claim.run}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, claim.path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale(stale: Claim) -> None:
    """Remove a stale claim, unless another process replaced it with a live one meanwhile."""
    aside = stale.path.with_name(f".{stale.path.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(stale.path, aside)
    except FileNotFoundError:
        return
    try:
        if read_claim(aside) != stale:  # a fresh claim moved aside by mistake: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, stale.path)
    finally:
        if aside.is_dir() and not aside.is_symlink():  # a damaged claim may be a folder
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
