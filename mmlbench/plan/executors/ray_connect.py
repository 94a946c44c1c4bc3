"""Joining a Ray cluster (`--address`) within a bounded time, or starting a local Ray instance.

ray.init against an address where no cluster answers retries for many minutes, prints a
warning every few seconds from its C++ core, and does not return to Python, so Ctrl-C and
SIGTERM wait for it. Here a HOST:PORT is first probed with a plain TCP connection (nothing
listening is one line at once), then ray.init runs in a helper thread, its output kept off the
terminal, while this thread waits at most `--connect-timeout` seconds in all and stays
interruptible. A wait that runs out leaves the helper thread behind: the process ends soon after.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import ray

from mmlbench.errors import MMLBenchError

CONNECT_TIMEOUT_SECONDS = 30.0  # --connect-timeout's default: a live head answers in well under a second
_WAIT_STEP_SECONDS = 0.1  # how often the waiting thread looks up, so that signals reach it


@contextlib.contextmanager
def connected(address: str | None, *, quiet: bool, timeout: float | None = None) -> Iterator[None]:
    """Join the cluster at `address`, or start a local instance; a connection this process already has is used as is."""
    if ray.is_initialized():  # a script (or a test) that called ray.init itself
        yield
        return
    level = logging.WARNING if quiet else logging.INFO
    if address:
        join(address, CONNECT_TIMEOUT_SECONDS if timeout is None else timeout, level)
    else:
        with _sigterm_kept():
            _init_or_fail("cannot start a local Ray instance", address="local", include_dashboard=False, logging_level=level)
    try:
        yield
    finally:
        ray.shutdown()


def join(address: str, timeout: float, logging_level: int) -> None:
    """ray.init(address) done within `timeout` seconds, or one MMLBenchError naming the address as typed."""
    deadline = time.monotonic() + timeout
    probe(address, timeout)
    failure: list[BaseException] = []
    done = threading.Event()

    def connect() -> None:
        try:
            _init_or_fail(f"cannot join the Ray cluster at --address {address}", address=address, logging_level=logging_level)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            failure.append(exc)
        done.set()

    with _stderr_kept_off():
        threading.Thread(target=connect, name="ray-connect", daemon=True).start()
        while not done.wait(_WAIT_STEP_SECONDS) and time.monotonic() < deadline:
            pass
    if failure:
        raise failure[0]
    if not done.is_set():
        raise MMLBenchError(f"no Ray cluster answered at --address {address} within {timeout:g} s (--connect-timeout)")


def probe(address: str, timeout: float) -> None:
    """A TCP connection to a HOST:PORT address (or ray://HOST:PORT); 'auto' and other forms are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except TimeoutError:
        raise MMLBenchError(f"no Ray cluster answered at --address {address} within {timeout:g} s (--connect-timeout)") from None
    except OSError as exc:  # refused, unreachable, unknown host
        raise MMLBenchError(f"cannot reach a Ray cluster at --address {address}: {exc.strerror or exc}") from None


def _init_or_fail(failure: str, **settings: Any) -> None:
    try:
        ray.init(**settings)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError, ...
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MMLBenchError(f"{failure}: {first_line}") from None


@contextlib.contextmanager
def _stderr_kept_off() -> Iterator[None]:
    """What is written to file descriptor 2 meanwhile (Ray's C++ warnings) goes to a scratch file."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as scratch:
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


@contextlib.contextmanager
def _sigterm_kept() -> Iterator[None]:
    """ray.init makes SIGTERM exit at once; keep run_sweep's handler, which stops the sweep cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, handler)
