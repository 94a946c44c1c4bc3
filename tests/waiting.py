"""Waiting on another process in a test: poll a condition (a file, a pid) until it holds.

The limit is generous (CI shares 2 cores with other work); the test fails with `what` if it
runs out, or as soon as the watched process ends without getting there.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
TIMEOUT = 600.0  # seconds: generous, for a loaded 2-core machine
_POLL = 0.05  # seconds between looks: the condition is cheap, the wait is for another process


def wait_until(
    condition: Callable[[], T], what: str, proc: subprocess.Popen | None = None, timeout: float = TIMEOUT
) -> T:
    """The first truthy value of `condition()`; an AssertionError naming `what` after `timeout`
    seconds, or at once when `proc` ends first (with its output)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended while waiting for {what}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(_POLL)
    return value
