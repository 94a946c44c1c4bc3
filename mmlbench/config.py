"""RunConfig: every setting of one run, validated before any data loads, and its hash."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any

from mmlbench.errors import MMLBenchError, unknown_name
from mmlbench.metrics import parse_metric
from mmlbench.plugins import Registry
from mmlbench.plugins.losses import LOSSES
from mmlbench.plugins.models import MODELS
from mmlbench.plugins.samplers import SAMPLERS

SCORES = ("cosine", "dot")
L2_SCOPES = ("table", "batch")
LAST_BATCHES = ("partial", "wrap")
# The plug-in registries, by the RunConfig field that names the run's entry.
PLUGINS: tuple[Registry[Any], ...] = (MODELS, LOSSES, SAMPLERS)


@dataclass(frozen=True)
class RunConfig:
    """One training run. A plug-in's parameters (loss, model, sampler) stay None unless the run uses it."""

    dataset: str
    model: str = "mf"
    loss: str = "ccl"
    negatives: int = 100  # sampled negatives per (user, positive) pair
    sampler: str = "uniform"  # uniform with replacement, as in the reference code
    popularity_alpha: float | None = None  # sampler=popularity: p(item) ~ count ** alpha
    score: str = "cosine"  # cosine (the cosine losses' premise) or dot
    embedding_dim: int = 64
    dropout: float = 0.1  # on the user vector while training (reference: 0.1)
    init_std: float = 1e-4  # N(0, std^2) embedding init (reference code)
    batch_size: int = 512
    lr: float = 1e-4  # Adam
    l2: float = 1e-9  # L2 weight; see l2_scope
    l2_scope: str = "table"  # table: (l2/2)*|W|^2 over the whole ID tables every step (reference); batch: the batch's rows / B
    last_batch: str = "partial"  # partial: the epoch's last batch is smaller (reference); wrap: it wraps around to full size
    grad_clip: float = 10.0  # max global gradient norm (reference: 10)
    epochs: int = 100
    eval_every: int = 1  # evaluate every this many epochs
    patience: int = 3  # stop after this many evaluations without improvement
    plateau_lr_factor: float = 0.1  # on no improvement: lr *= factor and reload the best weights (1 = off)
    min_lr: float = 1e-6  # floor of that decay (reference: 1e-6)
    min_delta: float = 1e-6  # a monitor gain below this is no improvement (reference: 1e-6)
    monitor: str = "recall@20"
    ks: tuple[int, ...] = (10, 20, 50)
    seed: int = 2019
    # Loss parameters (None: the loss's default, or unused by the loss).
    margin: float | None = None
    negative_weight: float | None = None
    margins: tuple[float, ...] | None = None
    margin_weights: tuple[float, ...] | None = None
    positive_weight: float | None = None
    temperature: float | None = None
    negative_power: float | None = None  # BSL's τ2: power on the negatives' softmax sum
    logq_correction: bool | None = None  # SSM: negatives' logits minus log(I q), q the sampler's
    # SimpleX parameters (None for MF).
    aggregator: str | None = None
    gamma: float | None = None
    history_len: int | None = None

    def resolved(self) -> RunConfig:
        """Defaults filled in for what this run uses, the rest cleared, everything checked."""
        specs = [registry.spec(getattr(self, registry.kind)) for registry in PLUGINS]  # names first
        self._check_names()
        changes: dict[str, Any] = {}
        for registry, spec in zip(PLUGINS, specs):
            params = spec.resolve({name: getattr(self, name) for name in spec.param_names})
            changes |= {name: params.get(name) for name in registry.param_names}
        changes["ks"] = tuple(sorted(set(self.ks)))
        config = dataclasses.replace(self, **changes)
        config._check_values()
        return config

    def _check_names(self) -> None:
        if self.score not in SCORES:
            raise unknown_name("score", self.score, SCORES)
        if self.l2_scope not in L2_SCOPES:
            raise unknown_name("l2-scope", self.l2_scope, L2_SCOPES)
        if self.last_batch not in LAST_BATCHES:
            raise unknown_name("last-batch", self.last_batch, LAST_BATCHES)

    def _check_values(self) -> None:
        _at_least("negatives", self.negatives, 1)
        _at_least("embedding-dim", self.embedding_dim, 1)
        _at_least("batch-size", self.batch_size, 1)
        _at_least("epochs", self.epochs, 1)
        _at_least("eval-every", self.eval_every, 1)
        _at_least("patience", self.patience, 1)
        for name in ("lr", "init_std", "grad_clip"):
            if getattr(self, name) <= 0:
                raise MMLBenchError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("l2", "min_lr", "min_delta"):
            if getattr(self, name) < 0:
                raise MMLBenchError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise MMLBenchError(f"--dropout must lie in [0, 1), got {self.dropout}")
        if not 0 < self.plateau_lr_factor <= 1:
            raise MMLBenchError(f"--plateau-lr-factor must lie in (0, 1], got {self.plateau_lr_factor}")
        if not self.ks or min(self.ks) < 1:
            raise MMLBenchError(f"--k needs positive cut-offs, got {list(self.ks)}")
        metric, k = parse_metric(self.monitor)
        if k not in self.ks:
            raise MMLBenchError(f"--monitor {self.monitor} needs {k} among --k {','.join(map(str, self.ks))}")

    def hash(self, dataset_fingerprint: str = "", *, with_seed: bool = True) -> str:
        """sha256 over the resolved settings and the processed data's fingerprint."""
        payload = dataclasses.asdict(self)
        if not with_seed:
            payload.pop("seed")
        payload["dataset_fingerprint"] = dataset_fingerprint
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def run_id(self, config_hash: str) -> str:
        return f"{self.dataset}-{self.model}-{self.loss}-n{self.negatives}-s{self.seed}-{config_hash[:10]}"

    def to_row(self) -> dict[str, Any]:
        """Flat columns for run.parquet: tuples become comma-joined strings."""
        return {f.name: _flat(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunConfig:
        """Rebuild a config from a run.parquet row (the inverse of to_row)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = row.get(f.name)
            if value is None or (isinstance(value, float) and value != value):
                continue
            values[f.name] = _unflat(f.name, value)
        return cls(**values)


_TUPLE_FIELDS = {"ks": int, "margins": float, "margin_weights": float}


def _flat(value: Any) -> Any:
    return ",".join(repr(v) if isinstance(v, float) else str(v) for v in value) if isinstance(value, tuple) else value


def _unflat(name: str, value: Any) -> Any:
    if name in _TUPLE_FIELDS:
        return tuple(_TUPLE_FIELDS[name](part) for part in str(value).split(","))
    if hasattr(value, "item"):  # numpy scalar from pandas
        return value.item()
    return value


def _at_least(option: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise MMLBenchError(f"--{option} must be >= {minimum}, got {value}")


# Checking values against RunConfig's field types: experiment files and the command line
# hand in plain values (TOML has no tuples and lets `true` or 1.7 stand where an int belongs).

_INT64 = 1 << 63  # run.parquet stores integers as int64


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

    bool is refused where an int belongs (TOML's `true` is no count), NaN and infinities
    wherever a number belongs, integers beyond int64 (run.parquet could not store them).
    """
    expected = _field_types()[name]
    if isinstance(expected, types.UnionType) or typing.get_origin(expected) is typing.Union:
        if value is None:
            return None
        expected = next(arg for arg in typing.get_args(expected) if arg is not type(None))
    if typing.get_origin(expected) is tuple:
        return _check_list(typing.get_args(expected)[0], value, label)
    problem = _scalar_problem(expected, value)
    if problem:
        raise MMLBenchError(f"{label} must be {problem}, got {_shown(value)}")
    return float(value) if expected is float else value


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
        return "" if math.isfinite(value) else "a finite number"
    if expected is str:
        return "" if isinstance(value, str) else "a string"
    return ""


def _shown(value: Any) -> str:
    """A value as the user wrote it: TOML's spelling of booleans, quotes around strings."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)
