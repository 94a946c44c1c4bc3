"""Atomic writes and checksums: nothing half-written ever sits under a final name, and no write is cut short by Ctrl-C."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from types import FrameType

_CHUNK = 1 << 20
_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _HashingWriter:
    """A binary file's `write` and `flush` that hash the bytes written and keep the OSError raised.

    torch.save writes through such an object; it reports a failed write as its own
    RuntimeError ("unexpected pos ..."), which `write_hashed` turns back into the OSError.
    """

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.digest, self.error = handle, hashlib.sha256(), None

    def write(self, data: bytes) -> int:
        try:
            written = self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise
        self.digest.update(data)
        return written

    def flush(self) -> None:
        try:
            self.handle.flush()
        except OSError as exc:
            self.error = exc
            raise


def write_hashed(path: Path, dump: Callable[[IO[bytes]], object]) -> str:
    """Write `path` with `dump(file)` and return the hex sha256 of the bytes written, hashed as they
    are written (no second read). A failed write is the OSError, whatever `dump` made of it."""
    with open(path, "wb") as handle:
        writer = _HashingWriter(handle)
        try:
            dump(writer)  # type: ignore[arg-type]
        except Exception as exc:
            if writer.error is not None and writer.error is not exc:
                raise writer.error from exc
            raise
    return writer.digest.hexdigest()


def is_disk_full(exc: BaseException) -> bool:
    """True for a write that failed because the disk (or the user's quota) is full.

    torch.save reports a short write as RuntimeError('... unexpected pos N vs M') instead of an OSError.
    """
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, RuntimeError) and "unexpected pos" in str(exc)


def _hidden_sibling(path: Path, tag: str) -> Path:
    # Hidden names are skipped by every reader (run store, dataset loader).
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def _destination(path: Path) -> Iterator[None]:
    """Make the missing parent folders of `path`; if writing it fails, remove them again (a
    disk-full `preprocess` left an empty <name>/ folder) and name `path` in a disk-full error
    (the failing write knows only a hidden temporary name, or none: "disk full while writing output")."""
    made = [folder for folder in path.parents if not folder.exists()]  # innermost first
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException as exc:
        for folder in made:
            with contextlib.suppress(OSError):  # not empty (another writer), or gone
                folder.rmdir()
        if isinstance(exc, OSError) and is_disk_full(exc):
            raise OSError(exc.errno, os.strerror(exc.errno), str(path)) from exc
        raise


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the block runs; their Python handlers run once it is done.

    Why: torch.save writing to a file object calls back into Python, and a KeyboardInterrupt
    raised there (Ctrl-C, SIGTERM in a sweep's worker, a cancelled Ray task: Ray interrupts the
    task through its SIGINT handler) comes out as RuntimeError('unexpected pos'), so a run
    stopped by the user read as failed, or as a full disk. Held, the interrupt lands after the
    write, whole, and is an interrupt. Only the main thread runs signal handlers: elsewhere,
    and for a signal without a Python handler (ignored, default), nothing is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signum: signal.getsignal(signum) for signum in _HELD_SIGNALS}
    handlers = {signum: handler for signum, handler in handlers.items() if callable(handler)}
    held: dict[int, FrameType | None] = {}
    holding = True

    def hold(signum: int, frame: FrameType | None) -> None:
        if holding:
            held.setdefault(signum, frame)
        else:  # left in place by a restore that a signal cut short: act as the handler it stands for
            handlers[signum](signum, frame)  # type: ignore[operator] - callable, filtered above

    try:
        for signum in handlers:
            signal.signal(signum, hold)
        yield
    finally:
        holding = False
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum, frame in held.items():  # raises, as the signal would have (even over an error of the block)
            handlers[signum](signum, frame)  # type: ignore[operator] - callable, filtered above


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it into place.

    On any exception the temporary file (and any parent folder made for it) is removed and
    `path` is left as it was. Ctrl-C and SIGTERM are held until the file is in place or removed
    (`interrupts_held`).
    """
    path = Path(path)
    tmp = _hidden_sibling(path, "tmp")
    with interrupts_held(), _destination(path):
        try:
            yield tmp
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small text file atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success swap it in for `path`.

    A previous folder at `path` is moved aside, replaced, then deleted, so `path` is
    always either the old complete folder or the new complete one. On any exception the
    temporary folder is deleted. Ctrl-C and SIGTERM are held until then (`interrupts_held`).
    """
    path = Path(path)
    tmp = _hidden_sibling(path, "tmp")
    with interrupts_held(), _destination(path):
        tmp.mkdir()
        try:
            yield tmp
            replace_dir(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Rename the complete folder `src` to `dst`, replacing any folder already there."""
    old = None
    if dst.exists():
        old = _hidden_sibling(dst, "old")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_dir(path: Path) -> None:
    """Delete a folder so that readers never see it half-removed.

    It is first renamed to a hidden sibling (one atomic step: from then on every reader
    skips it), then deleted; a crash in between leaves only a hidden folder behind.
    """
    path = Path(path)
    hidden = _hidden_sibling(path, "rm")
    os.replace(path, hidden)
    shutil.rmtree(hidden)


def writable_folder(path: Path) -> bool:
    """Whether files can be created in `path`, or where it would be created if it does not exist.

    A probe (a hidden temporary file, removed at once), not os.access: root passes access()
    where a read-only mount still refuses the write.
    """
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return False
    try:
        with tempfile.TemporaryFile(dir=folder, prefix="."):
            return True
    except OSError:
        return False
