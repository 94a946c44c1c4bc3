"""Claims: a run being trained is marked in the store, so a second sweep does not train it too.

A claim is `<results>/runs/.claims/<config_hash>.claim`, a small JSON file naming the host, the
pid and the start time of the process training that config. It is written under a temporary name
and hard-linked into place: the link fails when a claim exists, so taking a claim is atomic (also
on NFS, where a cluster backend's workers will share the store) and never seen half-written.

A claim whose process is gone (same host, no such pid: killed, crashed) is stale and taken over.
A claim from another host cannot be checked from here: it holds until it is released or removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import is_disk_full
from mmlbench.store import StoreUnwritable, runs_dir

CLAIMS_DIR = ".claims"  # hidden: run-store readers skip it


@dataclass(frozen=True)
class Claim:
    """Who trains a config: compared by holder, not by where the file lies."""

    host: str
    pid: int
    since: str
    path: Path = field(compare=False)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"


class ClaimedElsewhere(MMLBenchError):
    """Another live process is training this config: skip it, it is not a failure."""

    @classmethod
    def by(cls, claim: Claim) -> ClaimedElsewhere:
        return cls(f"being trained by {claim.describe()} (claim {claim.path}; remove it if that process is gone)")


def claim_path(results_dir: Path, config_hash: str) -> Path:
    return runs_dir(results_dir) / CLAIMS_DIR / f"{config_hash}.claim"


def claim_run(results_dir: Path, config_hash: str) -> Claim:
    """Claim the training of a config for this process; ClaimedElsewhere if a live process holds it.

    Writing the claim is also the check that the results folder takes files, done before training:
    StoreUnwritable names the folder when it does not.
    """
    path = claim_path(results_dir, config_hash)
    mine = Claim(socket.gethostname(), os.getpid(), _now(), path)
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
def claimed(results_dir: Path, config_hash: str) -> Iterator[Claim]:
    """Hold the claim of a config while the block runs, however it ends."""
    claim = claim_run(results_dir, config_hash)
    try:
        yield claim
    finally:
        release_run(claim)


def live_claim(results_dir: Path, config_hash: str) -> Claim | None:
    """The claim another live process holds on a config, if any (for a sweep's plan)."""
    held = read_claim(claim_path(results_dir, config_hash))
    return held if held is not None and not is_stale(held) else None


def read_claim(path: Path) -> Claim | None:
    """The claim at `path`; None if there is none. An unreadable claim counts as held."""
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
        return Claim(str(fields["host"]), int(fields["pid"]), str(fields["since"]), path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Claim("an unknown host", -1, "an unknown time", path)


def is_stale(claim: Claim) -> bool:
    """True when the claim's process is known to be gone: same host, and no process has its pid."""
    if claim.host != socket.gethostname() or claim.pid <= 0:
        return False
    try:
        os.kill(claim.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def _create(claim: Claim) -> bool:
    tmp = claim.path.with_name(f".{claim.path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"host": claim.host, "pid": claim.pid, "since": claim.since}, handle)
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
        aside.unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
