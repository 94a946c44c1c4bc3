"""The metrics the evaluator computes, what each means, and how a metric column is spelt.

Torch-free and below both the engine and the run store: the evaluator writes these
metrics, the store and `compare` recognise their columns, config checks `--monitor`,
the gate reads which way each one improves.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmlbench.errors import MMLBenchError, unknown_name


@dataclass(frozen=True)
class MetricSpec:
    """A metric at cut-off K. `per_user`: one value per user (averaged over users, kept in
    per_user.parquet for paired tests); else one value for the whole set of top-K lists.
    `higher_is_better`: which way it improves (the gate fails the other way; only such a
    metric can be the --monitor, which keeps the epoch with the highest value)."""

    meaning: str
    per_user: bool = True
    higher_is_better: bool = True


METRICS: dict[str, MetricSpec] = {
    "recall": MetricSpec("hits in the top K / the user's relevant items"),
    "ndcg": MetricSpec("DCG of the top K / the ideal DCG over min(K, relevant) items"),
    "hitrate": MetricSpec("1 if the top K holds a relevant item"),
    "precision": MetricSpec("hits in the top K / K"),
    "mrr": MetricSpec("1 / rank of the first hit in the top K"),
    # Beyond accuracy (engine.exposure): popularity = an item's share of the training interactions.
    "coverage": MetricSpec("share of the catalogue in at least one user's top K", per_user=False),
    "gini": MetricSpec("Gini index of the items' top-K exposure counts (0 = equal)", per_user=False, higher_is_better=False),
    "arp": MetricSpec("mean popularity of the user's top K", higher_is_better=False),
    "tail": MetricSpec("share of the user's top K outside the most popular --head-fraction of items"),
    "novelty": MetricSpec("mean -log2 popularity of the user's top K"),
}
METRIC_NAMES = tuple(METRICS)


def is_metric_column(name: str) -> bool:
    """True for per-K metric columns such as 'recall@20'."""
    base, sep, k = name.partition("@")
    return bool(sep) and base in METRICS and k.isdigit()


def parse_metric(name: str) -> tuple[str, int]:
    """'recall@20' -> ('recall', 20), with a clear error for anything else."""
    metric, sep, k = name.partition("@")
    if not sep or not k.isdigit() or int(k) < 1:
        raise MMLBenchError(f"a metric looks like recall@20, got '{name}'")
    if metric not in METRICS:
        raise unknown_name("metric", metric, METRIC_NAMES)
    return metric, int(k)


def higher_is_better(column: str) -> bool:
    """Which way the metric of a column such as 'gini@20' improves."""
    return METRICS[column.partition("@")[0]].higher_is_better


def parse_monitor(name: str) -> tuple[str, int]:
    """parse_metric for --monitor: early stopping keeps the highest value, so a metric that
    is better low (gini, arp) cannot be one."""
    metric, k = parse_metric(name)
    if not METRICS[metric].higher_is_better:
        better = ", ".join(m for m, spec in METRICS.items() if spec.higher_is_better)
        raise MMLBenchError(
            f"--monitor {name}: {metric} is better when lower, and the monitor keeps the epoch with the "
            f"highest value; monitor one of {better}"
        )
    return metric, k
