"""RunConfig: every setting of one run, validated before any data loads, and its hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
        """Defaults filled in for what this run uses, the rest cleared, everything checked.

        A config resolved already comes back as it is (also after pickling, to a worker): the
        experiment resolves each run's config once and every layer below receives it so.
        """
        if self.__dict__.get("_resolved"):
            return self
        config = self._resolve()
        object.__setattr__(config, "_resolved", True)  # not a field: no part of equality, hash or row
        return config

    def _resolve(self) -> RunConfig:
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


def _at_least(option: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise MMLBenchError(f"--{option} must be >= {minimum}, got {value}")
