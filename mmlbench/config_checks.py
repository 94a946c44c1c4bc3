"""Plain values checked against RunConfig's fields: what the command line and experiment files hand in.

Their types (TOML has no tuples and lets `true` or 1.7 stand where an int belongs), ranges,
choices (case-insensitive) and words (`--negatives all`), and each setting's option name.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import fields
from typing import Any

from mmlbench.config import PLUGINS, RunConfig
from mmlbench.errors import MMLBenchError


def option_name(name: str) -> str:
    """The command-line spelling of a setting: ks -> --k, batch_size -> --batch-size."""
    option = _option_names().get(name) or name
    return f"--{option.replace('_', '-')}"


@functools.cache
def _option_names() -> dict[str, str]:
    return {f.name: f.metadata["option"] for f in fields(RunConfig)}


@functools.cache
def words_of(name: str) -> tuple[str, ...]:
    """The strings numeric field `name` also takes: ('all',) for negatives."""
    return next(f.metadata["words"] for f in fields(RunConfig) if f.name == name)


_INT64 = 1 << 63  # run.parquet stores integers as int64
# The engine computes in float32: a setting beyond its range overflows to inf (or underflows to
# 0) inside torch, mid-run. Refused up front instead, from the command line and files alike.
_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32
_FLOAT32_RANGE = "0 or a number within float32's range (1.2e-38 to 3.4e+38 in magnitude)"


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(RunConfig)


def value_type(name: str) -> type:
    """The scalar type of field `name`: int for `ks: tuple[int, ...]`, float for `gamma: float | None`."""
    expected = _field_types()[name]
    while typing.get_args(expected):
        expected = next(arg for arg in typing.get_args(expected) if arg is not type(None) and arg is not Ellipsis)
    return expected


def check_setting(name: str, value: Any, label: str) -> Any:
    """`value` as field `name` holds it (lists become tuples, ints floats), or a one-line error naming `label`.

    bool is refused where an int belongs (TOML's `true` is no count), NaN, infinities and numbers
    float32 cannot hold wherever a number belongs, integers beyond int64 (run.parquet could not
    store them).
    """
    expected = _field_types()[name]
    if isinstance(value, str) and value.casefold() in words_of(name):
        return value.casefold()  # case-insensitive, as choices are: ALL is all
    if isinstance(expected, types.UnionType) or typing.get_origin(expected) is typing.Union:
        if value is None:
            return None
        expected = next(arg for arg in typing.get_args(expected) if arg is not type(None))
    if typing.get_origin(expected) is tuple:
        return _check_list(typing.get_args(expected)[0], value, label)
    problem = _scalar_problem(expected, value)
    if problem:
        also = "".join(f" or '{word}'" for word in words_of(name))
        raise MMLBenchError(f"{label} must be {problem}{also}, got {_shown(value)}")
    if isinstance(value, str):
        return _in_choice_case(name, value)
    return float(value) if expected is float else value


def choices_of(name: str) -> tuple[str, ...]:
    """The values setting `name` may take: its own choices, or its plug-in registry's names or
    the registry's choices for that parameter; () for a free value."""
    own = _fields_by_name()[name].metadata["choices"]
    if own:
        return own
    for registry in PLUGINS:
        if registry.kind == name:
            return tuple(sorted(registry))
        if name in registry.param_names:
            return registry.choices_of(name)
    return ()


def _in_choice_case(name: str, value: str) -> str:
    """Choices are case-insensitive: FP32 is fp32, MMCL is mmcl (so the run's hash is the same)."""
    return next((choice for choice in choices_of(name) if choice.casefold() == value.casefold()), value)


@functools.cache
def _fields_by_name() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in fields(RunConfig)}


def _check_list(item_type: type, value: Any, label: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise MMLBenchError(f"{label} must be a list of {_NOUNS[item_type]}s, got {_shown(value)}")
    for item in value:
        problem = _scalar_problem(item_type, item)
        if problem:
            raise MMLBenchError(f"{label} must be a list of {_NOUNS[item_type]}s, got {_shown(list(value))} ({_shown(item)} is not {problem})")
    return tuple(float(item) if item_type is float else item for item in value)


_NOUNS = {int: "integer", float: "number", str: "string", bool: "boolean"}


def _scalar_problem(expected: type, value: Any) -> str:
    """What `value` should have been, or '' when it is a valid `expected`."""
    if expected is bool:
        return "" if isinstance(value, bool) else "true or false"
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return "an integer"
        return "" if -_INT64 <= value < _INT64 else "an integer that fits in 64 bits"
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "a number"
        if not math.isfinite(value):
            return "a finite number"
        return "" if value == 0 or _FLOAT32_TINY <= abs(value) <= _FLOAT32_MAX else _FLOAT32_RANGE
    if expected is str:
        return "" if isinstance(value, str) else "a string"
    return ""


def _shown(value: Any) -> str:
    """A value as the user wrote it: TOML's spelling of booleans, quotes around strings."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)
