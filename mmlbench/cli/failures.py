"""How a failed command is shown: one red line on stderr, usage errors included.

With `--format json` a script reads stdout, so a failure there is also one JSON document,
`{"command": ..., "error": ..., "exit_code": ...}`, unless the command already printed its
document (a sweep with a failed run prints its runs, then exits 1): never two documents.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from typer import Abort
from typer.core import TyperGroup

from mmlbench import console

try:  # typer >= 0.20 carries its own copy of click; older ones use click itself
    from typer._click.exceptions import ClickException, UsageError
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException, UsageError  # type: ignore[assignment]
    from click.globals import get_current_context  # type: ignore[assignment]

USAGE_EXIT = 2  # Click's exit code for a usage error, kept


def report(message: str, exit_code: int, *, as_json: bool, command: str | None = None) -> None:
    """The red line on stderr and, with `as_json`, the error document on stdout."""
    console.error(message)
    if as_json and not console.documents.count:
        name = command if command is not None else _command_name()
        console.documents.print(json.dumps({"command": name, "error": message, "exit_code": exit_code}, indent=2) + "\n")


def _command_name(context: Any = None) -> str | None:
    """'train', 'runs show': the command path below the program's name (None at the top level)."""
    if context is None:
        context = get_current_context(silent=True)
    names = []
    while context is not None:
        names.append(context.info_name)
        context = context.parent
    return " ".join(reversed(names[:-1])) or None


def json_asked(args: Sequence[str]) -> bool:
    """`--format json` (or `--format=json`) on the command line, in any case."""
    for index, arg in enumerate(args):
        value = arg.partition("=")[2] if arg.startswith("--format=") else None
        if arg == "--format" and index + 1 < len(args):
            value = args[index + 1]
        if value is not None and value.lower() == "json":
            return True
    return False


class OneLineErrors(TyperGroup):
    """The root group: a usage error (a bad option value, an unknown option or command) is one
    red line and exit code 2, not Click's boxed panel with the usage; help is unchanged."""

    def main(self, args: Sequence[str] | None = None, *posargs: Any, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, *posargs, standalone_mode=False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        console.documents.count = 0
        try:
            code = super().main(argv, *posargs, standalone_mode=False, **extra)
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # its help, printed when it was raised
                sys.exit(exc.exit_code)
            command = _command_name(exc.ctx) if exc.ctx is not None else self._command_in(argv)
            report(_usage_line(exc, command), USAGE_EXIT, as_json=json_asked(argv), command=command)
            sys.exit(USAGE_EXIT)
        except ClickException as exc:
            report(exc.format_message(), exc.exit_code, as_json=json_asked(argv), command=_command_name(getattr(exc, "ctx", None)))
            sys.exit(exc.exit_code)
        except Abort:
            report("aborted", 1, as_json=json_asked(argv))
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def _command_in(self, argv: list[str]) -> str | None:
        """The (sub)command named in `argv`, for an error raised before its context existed."""
        names: list[str] = []
        command: Any = self
        for arg in argv:
            sub = getattr(command, "commands", {}).get(arg)
            if sub is not None:
                names.append(arg)
                command = sub
            elif not arg.startswith("-"):
                break
        return " ".join(names) or None


def _usage_line(exc: UsageError, command: str | None) -> str:
    message = exc.format_message().replace("\n", " ")
    path = exc.ctx.command_path if exc.ctx is not None else " ".join(filter(None, ("mmlbench", command)))
    return f"{message} (see '{path} --help')"
