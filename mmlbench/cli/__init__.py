"""The `mmlbench` command line: each command parses its options, calls one verb of `mmlbench.api` and renders the result."""

from __future__ import annotations

import copy
import functools
import inspect
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.models import ParameterInfo

from mmlbench import __version__
from mmlbench.cli import failures
from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import is_disk_full

DEBUG_ENV = "MMLBENCH_DEBUG"

app = typer.Typer(
    name="mmlbench",
    help="Benchmark loss functions for collaborative-filtering recommenders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    cls=failures.OneLineErrors,
    context_settings={"token_normalize_func": str.lower},  # choices are case-insensitive: --format JSON
)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every failure into one red line and an exit code; tracebacks only with --debug.

    With `--format json` the failure is also one JSON document on stdout (see `failures`).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        def _fail(message: str, code: int) -> typer.Exit:
            failures.report(message, code, as_json=_json_format(kwargs.get("output_format")))
            return typer.Exit(code)

        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except MMLBenchError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise _fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", 130) from None
        except OSError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            if is_disk_full(exc):
                where = f"while writing {exc.filename}" if exc.filename else "(no space left on the device)"
                raise _fail(f"disk full {where}", 1) from None
            raise _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 1) from None
        except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
            if os.environ.get(DEBUG_ENV):
                raise
            raise _fail(
                f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                1,
            ) from None

    return wrapper


def _json_format(output_format: Any) -> bool:
    """The command's --format (an enum of its choices, or None) is json."""
    return str(getattr(output_format, "value", output_format)).lower() == "json"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmlbench {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Benchmark loss functions for collaborative-filtering recommenders."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


def _plain_signature(command: Callable[..., Any]) -> inspect.Signature:
    """The command's signature with rich markup escaped in every option's help text.

    Help is plain text: unescaped, "[default: 100]" or "[quick]" would be read as a style tag
    and vanish. Typer reads the signature, so the escaped copies are what it shows.
    """
    signature = inspect.signature(command, eval_str=True)
    parameters = [p.replace(annotation=_escaped_annotation(p.annotation)) for p in signature.parameters.values()]
    return signature.replace(parameters=parameters)


def _escaped_annotation(annotation: Any) -> Any:
    metadata = getattr(annotation, "__metadata__", None)
    if not metadata:
        return annotation
    return Annotated[(annotation.__origin__, *map(_escaped_info, metadata))]


def _escaped_info(info: Any) -> Any:
    if not isinstance(info, ParameterInfo) or not info.help:
        return info
    escaped = copy.copy(info)  # the original may be shared by several commands
    escaped.help = escape(info.help)
    return escaped


def _register() -> None:
    from mmlbench.cli import compare, download, evaluate, preprocess, runs, train, tune

    for module in (download, preprocess, train, tune, evaluate, compare):
        command = guarded(module.command)
        command.__signature__ = _plain_signature(module.command)  # type: ignore[attr-defined]
        help_text = escape(inspect.getdoc(module.command) or "")
        app.command(name=module.NAME, help=help_text, no_args_is_help=module.NO_ARGS_IS_HELP)(command)
    app.add_typer(runs.app, name=runs.NAME)


_register()


def main() -> None:
    """Console-script entry point."""
    app()
