"""`train`'s setting options, generated from RunConfig's fields and the plug-in registries.

One option per field: its help from the field's metadata, its choices and default from
the field or, for a plug-in's parameter, from the registry entries that take it. A field
with `grid` metadata takes a comma list (one run per value), a tuple field a comma list
(one value), a bool field a --x/--no-x switch, any other field one typed value.
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING, Field, fields
from typing import Annotated, Any

import typer

from mmlbench.config import PLUGINS, RunConfig
from mmlbench.config_checks import check_setting, choices_of, option_name, value_type, words_of
from mmlbench.errors import MMLBenchError

SETTINGS: tuple[Field[Any], ...] = fields(RunConfig)
GRID_NOTE = "Comma list = one run per value."


def setting_parameters() -> list[inspect.Parameter]:
    """The keyword parameters of a command taking every RunConfig field as an option (default None)."""
    return [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_annotation(f))
        for f in SETTINGS
    ]


def _annotation(f: Field[Any]) -> Any:
    option, text = option_name(f.name), help_text(f)
    if value_type(f.name) is bool:
        return Annotated[bool | None, typer.Option(f"{option}/--no-{option[2:]}", help=text)]
    listed = f.metadata["grid"] or _is_tuple(f)
    kind = str if listed else value_type(f.name)  # a list is parsed here, so its option is text
    return Annotated[kind | None, typer.Option(option, help=text, metavar=_metavar(f, listed))]


def _metavar(f: Field[Any], listed: bool) -> str:
    """What the option takes: <int>, <float,...> (a comma list), <name,...> (one of its choices),
    <int|all,...> (a number or one of the field's words)."""
    kind = "name" if choices_of(f.name) else "|".join((value_type(f.name).__name__, *words_of(f.name)))
    return f"<{kind},...>" if listed else f"<{kind}>"


def help_text(f: Field[Any]) -> str:
    """'Similarity: cosine, dot [default: cosine]. Comma list = one run per value.'"""
    text = f.metadata["help"].removesuffix(".")
    choices = choices_of(f.name)
    if choices:
        text += f": {', '.join(choices)}"
    default = _default_text(f)
    text += f" [default: {default}]." if default else "."
    return f"{text} {GRID_NOTE}" if f.metadata["grid"] else text


def _default_text(f: Field[Any]) -> str:
    if f.default is not None and f.default is not MISSING:
        return _shown(f.default)
    for registry in PLUGINS:
        if f.name in registry.param_names:
            defaults = registry.defaults_of(f.name)
            return ", ".join(f"{_shown(value)} for {entry}" for entry, value in defaults.items())
    return ""


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(_shown, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}".replace("e-0", "e-")
    return str(value)


def _is_tuple(f: Field[Any]) -> bool:
    return "tuple" in str(f.type)


def split_command_line(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The given setting options as fixed settings and grid axes, each value type-checked."""
    settings: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    for f in SETTINGS:
        value, option = values.get(f.name), option_name(f.name)
        if value is None:
            continue
        if _is_tuple(f):
            settings[f.name] = check_setting(f.name, _parse_list(option, value, value_type(f.name)), option)
        elif f.metadata["grid"]:
            values_given = _parse_list(option, value, value_type(f.name), words_of(f.name))
            parsed = [check_setting(f.name, v, option) for v in values_given]
            if len(parsed) == 1:
                settings[f.name] = parsed[0]
            else:
                grid[f.name] = parsed
        else:
            settings[f.name] = check_setting(f.name, value, option)
    return settings, grid


def _parse_list(option: str, text: str, convert: type, words: tuple[str, ...] = ()) -> list[Any]:
    """Comma-separated values of type `convert`, or any of `words` as written (--negatives 10,all)."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise MMLBenchError(f"{option} has an empty value in '{text}'")
    try:
        return [part if part.casefold() in words else convert(part) for part in parts]
    except ValueError:
        also = "".join(f" or {word}" for word in words)
        raise MMLBenchError(f"{option} expects {convert.__name__} values{also}, got '{text}'") from None
