"""The names of the ranking metrics the evaluator computes, and how a metric column is spelt.

Torch-free and below both the engine and the run store: the evaluator writes these
metrics, the store and `compare` recognise their columns, config checks `--monitor`.
"""

from __future__ import annotations

from mmlbench.errors import MMLBenchError, unknown_name

METRIC_NAMES = ("recall", "ndcg", "hitrate", "precision", "mrr")


def is_metric_column(name: str) -> bool:
    """True for per-K metric columns such as 'recall@20'."""
    base, sep, k = name.partition("@")
    return bool(sep) and base in METRIC_NAMES and k.isdigit()


def parse_metric(name: str) -> tuple[str, int]:
    """'recall@20' -> ('recall', 20), with a clear error for anything else."""
    metric, sep, k = name.partition("@")
    if not sep or not k.isdigit() or int(k) < 1:
        raise MMLBenchError(f"a metric looks like recall@20, got '{name}'")
    if metric not in METRIC_NAMES:
        raise unknown_name("metric", metric, METRIC_NAMES)
    return metric, int(k)
