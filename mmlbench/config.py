"""RunConfig: every setting of one run, validated before any data loads, and its hash."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from mmlbench.errors import MMLBenchError, unknown_name
from mmlbench.metrics import parse_monitor
from mmlbench.plugins import Registry
from mmlbench.plugins.losses import LOSSES
from mmlbench.plugins.models import MODELS
from mmlbench.plugins.samplers import SAMPLERS

SCORES = ("cosine", "dot")
L2_SCOPES = ("table", "batch")
LAST_BATCHES = ("partial", "wrap")
PRECISIONS = ("fp32", "tf32")
ALL = "all"  # --negatives all: every item of the catalogue but the row's positive, no sampling
EPOCH_SAMPLINGS = ("pairs", "user-uniform")
# Settings added after runs were stored, at the value those runs had: left out of the hash so
# their hashes (and the reuse of completed runs) stay as they were.
HASH_NEUTRAL = {"precision": "fp32", "epoch_sampling": "pairs", "head_fraction": 0.2}
# Values whose arithmetic changed after runs were stored under them, spelled in the hash as
# below. The old arithmetic got a new name that hashes as the old value did, so its stored runs
# keep their hashes (and `read_stored_names` gives their rows that name); the value itself now
# hashes under a new spelling, so no stored run of the old arithmetic is taken for the new one.
HASH_SPELLING = {
    "aggregator": {"user-attention-masked": "user-attention", "user-attention": "user-attention (RecZoo)"},
}
# The plug-in registries, by the RunConfig field that names the run's entry.
PLUGINS: tuple[Registry[Any], ...] = (MODELS, LOSSES, SAMPLERS)


def setting(
    default: Any, help: str, *, grid: bool = False, choices: tuple[str, ...] = (), option: str = "",
    words: tuple[str, ...] = (),
) -> Any:
    """A RunConfig field with what the command line and experiment files need to know about it.

    `help` is the option's help text (its default and choices are appended where shown),
    `grid`: a comma list on the command line makes one run per value, `option`: the
    command-line name where it is not the field's (ks -> --k), `words`: strings a numeric
    field also takes (--negatives all). A None default marks a plug-in parameter: its
    registry holds the default.
    """
    metadata = {"help": help, "grid": grid, "choices": choices, "option": option, "words": words}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunConfig:
    """One training run. A plug-in's parameters (loss, model, sampler) stay None unless the run uses it."""

    dataset: str = setting(MISSING, "Processed dataset name.", grid=True)
    model: str = setting("mf", "Encoder", grid=True)
    loss: str = setting("ccl", "Loss", grid=True)
    negatives: int | str = setting(
        100, "Sampled negatives per positive (all: every item but the positive, no sampling)", grid=True, words=(ALL,)
    )
    sampler: str = setting("uniform", "Negative sampler", grid=True)  # uniform with replacement, as the reference
    popularity_alpha: float | None = setting(None, "Exponent of --sampler popularity: p(item) ~ count ** alpha", grid=True)
    candidates: int | None = setting(
        None, "Uniform candidates per pair of --sampler hard, which keeps the --negatives the model scores highest", grid=True
    )
    score: str = setting("cosine", "Similarity", grid=True, choices=SCORES)  # cosine: the cosine losses' premise
    embedding_dim: int = setting(64, "Embedding size", grid=True)
    dropout: float = setting(0.1, "Dropout on the user vector while training", grid=True)  # reference: 0.1
    init_std: float = setting(1e-4, "Std of the N(0, std^2) embedding init", grid=True)  # reference code
    batch_size: int = setting(512, "Training pairs per batch", grid=True)
    lr: float = setting(1e-4, "Adam learning rate", grid=True)
    l2: float = setting(1e-9, "L2 weight on the embeddings, see --l2-scope", grid=True)
    l2_scope: str = setting(
        "table", "L2 scope (table = (l2/2)|W|^2 over the whole ID tables every step, the reference; batch = the batch's rows / B)",
        grid=True, choices=L2_SCOPES,
    )
    last_batch: str = setting(
        "partial", "Epoch's last batch (partial = smaller, the reference; wrap = filled from the start)",
        grid=True, choices=LAST_BATCHES,
    )
    epoch_sampling: str = setting(
        "pairs", "Epoch's training pairs (pairs = each once, shuffled, the reference; user-uniform = LightGCN's "
        "official draws: a uniform user, then one of its items)", grid=True, choices=EPOCH_SAMPLINGS,
    )
    precision: str = setting(
        "fp32", "Float32 matrix products on CUDA (fp32 = IEEE float32, the reference; tf32 = TensorFloat-32 "
        "tensor cores: faster, products rounded to a 10-bit mantissa)", grid=True, choices=PRECISIONS,
    )
    grad_clip: float = setting(10.0, "Max global gradient norm; 0 = no clipping", grid=True)  # reference: 10
    grad_clip_eps: float = setting(1e-6, "Added to the gradient norm before dividing by it when clipping")  # torch's clip_grad_norm_
    epochs: int = setting(100, "Maximum epochs")
    eval_every: int = setting(1, "Evaluate every N epochs")
    patience: int = setting(3, "Evaluations without improvement before stopping")
    plateau_lr_factor: float = setting(0.1, "On no improvement: lr *= this and reload the best weights; 1 = off")
    min_lr: float = setting(1e-6, "Floor of the plateau decay")  # reference: 1e-6
    min_delta: float = setting(1e-6, "Smallest monitor gain that counts as improvement")  # reference: 1e-6
    monitor: str = setting("recall@20", "Metric for model selection")
    ks: tuple[int, ...] = setting((10, 20, 50), "Cut-offs, e.g. 10,20,50", option="k")
    head_fraction: float = setting(
        0.2, "tail@K: the most popular share of the items (by train interactions) that is not the long tail"
    )
    seed: int = setting(2019, "Random seed", grid=True)
    # Loss parameters (None: the loss's default, or unused by the loss).
    margin: float | None = setting(None, "CCL: the negatives' cosine threshold; hinge: the gap s_pos - s_neg asked for", grid=True)
    negative_weight: float | None = setting(None, "CCL w / MMCL W", grid=True)
    margins: tuple[float, ...] | None = setting(None, "MMCL margins, e.g. 0.7,0.8,0.9")
    margin_weights: tuple[float, ...] | None = setting(None, "MMCL margin weights, e.g. 0.10,0.15,0.75")
    positive_weight: float | None = setting(None, "MMCL positive weight", grid=True)
    temperature: float | None = setting(None, "SSM temperature / BSL τ1", grid=True)
    negative_power: float | None = setting(
        None, "BSL τ2, the power on the negatives' softmax sum; 1 = softmax", grid=True
    )
    uniformity_weight: float | None = setting(
        None, "DirectAU γ, the weight of the uniformity term (directau draws no negatives: --negatives is 0)", grid=True
    )
    logq_correction: bool | None = setting(
        None, "SSM: subtract log(I q_j) from negative j's logit, q the sampler's probability (a no-op for uniform samplers)"
    )
    # SimpleX parameters (None for MF).
    aggregator: str | None = setting(
        None, "SimpleX history aggregator (user-attention: RecZoo's; -masked: our earlier form)", grid=True,
    )
    gamma: float | None = setting(None, "SimpleX weight of the ID embedding", grid=True)
    history_len: int | None = setting(None, "SimpleX history items per user", grid=True)
    # LightGCN parameters (None for the other models).
    layers: int | None = setting(None, "LightGCN propagation layers over the training graph", grid=True)

    def resolved(self) -> RunConfig:
        """Defaults filled in for what this run uses, the rest cleared, everything checked."""
        specs = [registry.spec(getattr(self, registry.kind)) for registry in PLUGINS]  # names first
        self._check_names()
        if self.negatives == ALL:
            self._check_all_negatives()
        changes: dict[str, Any] = {}
        for registry, spec in zip(PLUGINS, specs):
            params = spec.resolve({name: getattr(self, name) for name in spec.param_names + spec.reads})
            changes |= {name: params.get(name) for name in registry.param_names}
        changes["ks"] = tuple(sorted(set(self.ks)))
        if LOSSES[self.loss].takes_embeddings:
            changes["negatives"] = self._no_negatives()
        config = dataclasses.replace(self, **changes)
        config._check_values()
        return config

    def _no_negatives(self) -> int:
        """A loss that draws no negatives: 0 negatives, whatever --negatives said (one run, not one per count)."""
        if self.sampler != "uniform":
            raise MMLBenchError(f"--loss {self.loss} draws no negatives: --sampler {self.sampler} does not apply to it")
        return 0

    def _check_all_negatives(self) -> None:
        """--negatives all scores every item: nothing is drawn, so no sampler applies, and a loss
        that takes no negatives (DirectAU) cannot take all of them."""
        if LOSSES[self.loss].takes_embeddings:
            raise MMLBenchError(f"--loss {self.loss} draws no negatives: --negatives all does not apply to it")
        if self.sampler != RunConfig.sampler:
            raise MMLBenchError(
                f"--negatives all takes every item but the positive, with no sampling: "
                f"--sampler {self.sampler} does not apply (leave the default, {RunConfig.sampler})"
            )

    def _check_names(self) -> None:
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise unknown_name(f.name.replace("_", "-"), getattr(self, f.name), choices)

    def _check_values(self) -> None:
        if isinstance(self.negatives, str) and self.negatives != ALL:
            raise MMLBenchError(f"--negatives is a count or {ALL}, got '{self.negatives}'")
        if not LOSSES[self.loss].takes_embeddings and self.negatives != ALL:
            _at_least("negatives", self.negatives, 1)
        _at_least("embedding-dim", self.embedding_dim, 1)
        _at_least("batch-size", self.batch_size, 1)
        _at_least("epochs", self.epochs, 1)
        _at_least("eval-every", self.eval_every, 1)
        _at_least("patience", self.patience, 1)
        _at_least("seed", self.seed, 0)  # numpy's generators take no negative seed
        for name in ("lr", "init_std", "grad_clip_eps"):
            if getattr(self, name) <= 0:
                raise MMLBenchError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("l2", "min_lr", "min_delta", "grad_clip"):
            if getattr(self, name) < 0:
                raise MMLBenchError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise MMLBenchError(f"--dropout must lie in [0, 1), got {self.dropout}")
        if not 0 < self.plateau_lr_factor <= 1:
            raise MMLBenchError(f"--plateau-lr-factor must lie in (0, 1], got {self.plateau_lr_factor}")
        if not self.ks or min(self.ks) < 1:
            raise MMLBenchError(f"--k needs positive cut-offs, got {list(self.ks)}")
        if not 0 <= self.head_fraction <= 1:
            raise MMLBenchError(f"--head-fraction must lie in [0, 1], got {self.head_fraction}")
        metric, k = parse_monitor(self.monitor)
        if k not in self.ks:
            raise MMLBenchError(f"--monitor {self.monitor} needs {k} among --k {','.join(map(str, self.ks))}")

    def hash(self, dataset_fingerprint: str = "", *, with_seed: bool = True) -> str:
        """sha256 over the resolved settings and the processed data's fingerprint.

        Settings that are None (parameters of plug-ins the run does not use) are left out,
        so adding an optional parameter does not move the hashes of runs that do not use it;
        so are the HASH_NEUTRAL settings at the value that runs stored before them had.
        Values in HASH_SPELLING are hashed as spelled there.
        """
        payload = {
            name: HASH_SPELLING.get(name, {}).get(value, value) for name, value in dataclasses.asdict(self).items()
            if value is not None and HASH_NEUTRAL.get(name, MISSING) != value
        }
        if not with_seed:
            payload.pop("seed")
        payload["dataset_fingerprint"] = dataset_fingerprint
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

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


def read_stored_names(row: dict[str, Any]) -> dict[str, Any]:
    """A run row with the names its values have now: a value whose arithmetic changed after the
    row was stored (HASH_SPELLING) becomes the name of the arithmetic the run was trained with.

    Such a row holds the spelling that name hashes as (a row stored as `user-attention` before
    the reference's arithmetic); it is told from a row of the value's new arithmetic by its
    stored config_hash, which it rebuilds under that name only (`user-attention-masked`).
    """
    for name, spellings in HASH_SPELLING.items():
        for current, spelled in spellings.items():
            if current != spelled and row.get(name) == spelled and _rebuilds_hash({**row, name: current}):
                return {**row, name: current}
    return row


def _rebuilds_hash(row: dict[str, Any]) -> bool:
    try:
        return RunConfig.from_row(row).hash(str(row.get("dataset_sha256", ""))) == row.get("config_hash")
    except (TypeError, ValueError):  # not a whole run row
        return False


_TUPLE_FIELDS = {"ks": int, "margins": float, "margin_weights": float}


def _flat(value: Any) -> Any:
    return ",".join(repr(v) if isinstance(v, float) else str(v) for v in value) if isinstance(value, tuple) else value


def _unflat(name: str, value: Any) -> Any:
    if name in _TUPLE_FIELDS:
        return tuple(_TUPLE_FIELDS[name](part) for part in str(value).split(","))
    if hasattr(value, "item"):  # numpy scalar from pandas
        return value.item()
    return value


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


def _at_least(option: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise MMLBenchError(f"--{option} must be >= {minimum}, got {value}")


# Checking values against RunConfig's field types: experiment files and the command line
# hand in plain values (TOML has no tuples and lets `true` or 1.7 stand where an int belongs).

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
