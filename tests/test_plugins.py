"""Contract tests, run over every registered plug-in: a new loss, model, sampler or compare
format gets them all.

Each entry (and each non-default choice of its parameters) learns the planted clusters on
the CPU and on CUDA when present, and its stored checkpoint reloads through `evaluate`
to the same numbers. The specs agree with their implementations and with RunConfig.
Every compare renderer carries every cell's mean; the machine-readable ones read back exact.
"""

from __future__ import annotations

import inspect
import io
import json
from dataclasses import fields

import pandas as pd
import pytest
import torch

import compare_support as cs
from mmlbench import store
from mmlbench.config import PLUGINS, RunConfig
from mmlbench.plugins.losses import LOSSES
from mmlbench.report.compare import CompareSpec, build_comparison
from mmlbench.report.formats import RENDERERS
from mmlbench.report.selection import load_completed_runs
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.rescore import rescore
from mmlbench.runs.single import train_run

FAST = dict(negatives=10, batch_size=64, lr=0.01, epochs=12, patience=4, history_len=8)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _cases() -> list[tuple[str, str, dict]]:
    """(kind, entry, parameters): every entry with its defaults, then each other choice of a parameter."""
    cases = []
    for registry in PLUGINS:
        for name, spec in sorted(registry.items()):
            cases.append((registry.kind, name, {}))
            for param, allowed in spec.choices.items():
                cases += [(registry.kind, name, {param: value}) for value in allowed if value != spec.defaults[param]]
    return cases


CASES = _cases()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("kind", "name", "params"), CASES, ids=[f"{k}={n}{''.join(f',{v}' for v in p.values())}" for k, n, p in CASES])
def test_every_plugin_learns_the_planted_clusters_and_reloads(planted_dir, tmp_path, device, kind, name, params):
    config = RunConfig("planted", **{**FAST, kind: name, **params})
    options = TrainOptions(device=device, data_dir=planted_dir, results_dir=tmp_path, quiet=True)
    outcome = train_run(config, options)
    assert outcome.status == store.STATUS_COMPLETED
    assert outcome.row["recall@10"] > 0.6
    reloaded = rescore(
        outcome.run_dir, ks=None, split="test", device=device, data_dir=planted_dir, eval_batch_users=None, keep_top=False
    )
    assert reloaded.config == config.resolved()
    for metric, value in reloaded.evaluation.metrics.items():
        assert value == pytest.approx(outcome.row[metric], abs=1e-6), metric


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_spec_names_exactly_the_function_keyword_parameters(name):
    signature = inspect.signature(LOSSES[name].load())
    keyword_only = tuple(p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY)
    assert LOSSES[name].param_names == keyword_only


@pytest.mark.parametrize("registry", PLUGINS, ids=lambda r: r.kind)
def test_every_entry_loads_and_every_parameter_is_an_optional_runconfig_field(registry):
    defaults = {f.name: f.default for f in fields(RunConfig)}
    assert registry.kind in defaults
    for spec in registry.values():
        assert callable(spec.load())
        for param in spec.param_names:
            assert defaults.get(param, "missing") is None, f"{param} must be a RunConfig field defaulting to None"


def test_every_optional_runconfig_field_belongs_to_a_plugin():
    taken = {param for registry in PLUGINS for param in registry.param_names}
    optional = {f.name for f in fields(RunConfig) if f.default is None}
    assert optional == taken


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    runs = load_completed_runs(cs.make_store(tmp_path_factory.mktemp("store")))
    return build_comparison(runs, CompareSpec(baseline={"loss": "ccl"}))


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_every_renderer_carries_every_cell(comparison, name):
    text = RENDERERS[name].render(comparison)
    means = {
        (row, col, metric): cell.mean[metric] for (row, col), cell in comparison.cells.items() for metric in comparison.spec.metrics
    }
    if not RENDERERS[name].machine:
        for mean in means.values():
            assert f"{mean:.4f}" in text  # tables round to 4 decimals
        return
    read = _read_back(name, text, comparison)
    assert read.keys() == means.keys()
    for key, mean in means.items():
        assert read[key] == pytest.approx(mean, rel=1e-12), key


def _read_back(name: str, text: str, comparison) -> dict:
    """(row, col, metric) -> mean, parsed from a machine-readable rendering."""
    spec = comparison.spec
    if name == "csv":
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        ours = frame[frame["source"] == "ours"]
        return {
            (tuple(r[c] for c in spec.rows), tuple(r[c] for c in spec.cols), r["metric"]): float(r["mean"])
            for _, r in ours.iterrows()
        }
    cells = json.loads(text)["cells"]
    return {
        (tuple(str(c["row"][k]) for k in spec.rows), tuple(str(c["col"][k]) for k in spec.cols), metric): values["mean"]
        for c in cells
        for metric, values in c["metrics"].items()
    }
