"""Plug-in registries, one per kind (losses, models, samplers), torch-free.

A spec says what a plug-in is called, which parameters it takes (RunConfig field names)
with their defaults, choices and checks, what it can do (capabilities), and where its
implementation lives ("module:attribute", imported on first use). Config, help texts,
"did you mean" errors and the run row's columns read the specs; only runs.build loads
the implementations, so the CLI's start-up and `RunConfig` never pay for importing torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mmlbench.errors import unknown_name


@dataclass(frozen=True)
class PluginSpec:
    """A registered plug-in: its implementation, its parameters' defaults, choices and check."""

    target: str  # "module:attribute" of the implementation
    defaults: Mapping[str, Any] = field(default_factory=dict)  # parameter -> default; the keys are its parameters
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # parameter -> allowed values
    check: Callable[[dict[str, Any]], None] | None = None  # raises MMLBenchError on bad values
    reads: tuple[str, ...] = ()  # other RunConfig fields its check and derived defaults see (read-only)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.defaults)

    def params_of(self, config: Any) -> dict[str, Any]:
        """This plug-in's parameters as `config` (a resolved RunConfig) holds them."""
        return {name: getattr(config, name) for name in self.param_names}

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """This plug-in's parameters: given values where set (not None), defaults elsewhere, checked.

        `given` holds the parameters and the fields named in `reads`; the check sees both.
        """
        context = {name: given[name] for name in self.reads}
        params = {
            name: given[name] if given.get(name) is not None else _value(default, context)
            for name, default in self.defaults.items()
        }
        for name, allowed in self.choices.items():
            if params[name] not in allowed:
                raise unknown_name(name.replace("_", "-"), params[name], allowed)
        if self.check is not None:
            self.check(context | params)
        return params

    def load(self) -> Any:
        return load(self.target)


@dataclass(frozen=True)
class Derived:
    """A default computed from the run's other settings (a spec's `reads`), e.g. 5 x --negatives."""

    rule: Callable[[Mapping[str, Any]], Any]
    text: str  # how help texts show it

    def __str__(self) -> str:
        return self.text


def _value(default: Any, context: Mapping[str, Any]) -> Any:
    return default.rule(context) if isinstance(default, Derived) else default


def load(target: str) -> Any:
    """The object a "module:attribute" reference names, importing its module."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


Spec = TypeVar("Spec", bound=PluginSpec)


class Registry(dict[str, Spec], Generic[Spec]):
    """Name -> spec for one kind of plug-in; `kind` is the RunConfig field that picks one."""

    def __init__(self, kind: str, entries: Mapping[str, Spec]) -> None:
        super().__init__(entries)
        self.kind = kind

    def spec(self, name: str) -> Spec:
        """The spec called `name`, or a one-line error suggesting the closest name."""
        try:
            return self[name]
        except KeyError:
            raise unknown_name(self.kind, name, self) from None

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter any entry takes: RunConfig keeps these None unless the run's entry uses them."""
        return tuple(sorted({name for spec in self.values() for name in spec.param_names}))

    def defaults_of(self, param: str) -> dict[str, Any]:
        """Entry name -> its default for `param`, for the entries that take it (help texts)."""
        return {name: spec.defaults[param] for name, spec in sorted(self.items()) if param in spec.defaults}

    def choices_of(self, param: str) -> tuple[str, ...]:
        """The allowed values of `param`, where an entry restricts them."""
        return next((spec.choices[param] for spec in self.values() if param in spec.choices), ())
