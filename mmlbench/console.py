"""Shared rich consoles: results to stdout, messages and progress to stderr."""

from __future__ import annotations

import contextlib
import sys
from typing import ContextManager

from rich.console import Console

# Off a terminal (CI logs, pipes, tests) rich would wrap tables at 80 columns.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def show_progress(quiet: bool) -> bool:
    """Progress bars only for a person at a terminal: never in CI logs or with --quiet."""
    return not quiet and sys.stderr.isatty()


def status(message: str, quiet: bool = False) -> ContextManager[object]:
    """A spinner with `message` on stderr while a long quiet step runs; nothing where bars would not show."""
    return err.status(message) if show_progress(quiet) else contextlib.nullcontext()


def warn(message: str) -> None:
    """One warning, one line: never wrapped, so logs can be grepped."""
    err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def info(message: str) -> None:
    err.print(message, highlight=False)
