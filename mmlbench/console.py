"""Shared rich consoles: results to stdout, messages and progress to stderr."""

from __future__ import annotations

import contextlib
import enum
import sys
from typing import ContextManager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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


# Messages are plain text: escaped, so "[grid]" or "[default: 1]" is shown, not read as a style,
# and one line each (soft_wrap), so a long path is never split across lines in a log.


class OutputFormat(str, enum.Enum):
    """What a command writes to stdout (--format), in one vocabulary for every command: a table
    for a person, or for scripts one JSON document or CSV rows (compare adds markdown)."""

    table = "table"
    json = "json"
    csv = "csv"


class Documents:
    """Machine-readable documents (--format json, csv ...) written to stdout by this command.

    Counted so that an error after one adds no second document that would break a parser.
    """

    def __init__(self) -> None:
        self.count = 0

    def print(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
        self.count += 1


documents = Documents()


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def info(message: str) -> None:
    err.print(escape(message), highlight=False, soft_wrap=True)


class ProgressBar:
    """A rich bar (description, bar, done/total, time) on stderr where progress is shown
    (`show_progress`), else None; used as a context manager that starts and stops it."""

    def __init__(self, quiet: bool, *, transient: bool = False) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.bar = Progress(*columns, console=err, transient=transient) if show_progress(quiet) else None

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
