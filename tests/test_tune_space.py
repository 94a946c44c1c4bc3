"""`tune`'s search spaces: the plug-ins' defaults are valid settings of their losses, and an experiment
file's [search] and [tune] tables are checked like every other setting (one line, nothing run)."""

from __future__ import annotations

import re

import pytest

from mmlbench.config import RunConfig
from mmlbench.errors import MMLBenchError
from mmlbench.plan.experiment import parse_experiment
from mmlbench.plan.tuning.space import SearchTables, cell_space, unused
from mmlbench.plugins.losses import LOSSES
from mmlbench.plugins.search import Choices, Range


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_default_dimension_is_a_valid_setting_of_its_loss_at_both_ends(loss):
    config = RunConfig("planted", loss=loss).resolved()
    space = cell_space(config, SearchTables())  # checks every bound and choice against the loss
    assert {"lr", "l2", "dropout"} <= set(space)
    assert set(space) - {"lr", "l2", "dropout", "score"} == set(LOSSES[loss].search) - {"score"}
    for name, dimension in space.items():
        assert dimension.source, f"{loss} {name} says nowhere where its range comes from"
        assert isinstance(dimension, Choices) or dimension.low < dimension.high


def test_search_tables_override_the_defaults_and_the_command_line_fixes_a_setting():
    experiment = parse_experiment(
        {"search": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}, "dropout": False, "ccl": {"margin": [0.5, 0.9]}}},
        source="e.toml",
    )
    space = cell_space(RunConfig("planted", loss="ccl").resolved(), experiment.search, fixed={"l2"})
    assert space["lr"] == Range(1e-3, 1e-2, log=True) and space["margin"] == Choices((0.5, 0.9))
    assert "dropout" not in space and "l2" not in space and "negative_weight" in space  # default kept
    bpr = cell_space(RunConfig("planted", loss="bpr").resolved(), experiment.search)
    assert "margin" not in bpr  # a ccl table applies to ccl cells only


def test_a_parameter_no_cell_takes_is_named():
    tables = parse_experiment({"search": {"temperature": [0.1, 0.2]}}, source="e.toml").search
    assert unused(tables, [RunConfig("planted", loss="ccl").resolved()]) == ["temperature"]


BAD_SEARCH = [
    ({"lrr": [0.1]}, "unknown parameter to search in [search] of e.toml (or a loss) 'lrr'. Did you mean 'lr'?"),
    ({"loss": ["bpr"]}, "loss in [search] of e.toml is what makes a cell, not a parameter to search"),
    ({"lr": {"low": 1e-2, "high": 1e-3}}, "[search] lr in e.toml has low 0.01 > high 0.001"),
    ({"lr": {"low": 1e-3, "high": 1e-3}}, "[search] lr in e.toml is an empty range (low = high = 0.001)"),
    ({"lr": {"low": 0, "high": 1e-3, "log": True}}, "its low must be > 0, got 0"),
    ({"lr": {"low": 1e-4}}, "[search] lr in e.toml needs low and high"),
    ({"lr": {"low": 1e-4, "high": 1e-3, "step": 1}}, "needs low and high (and optionally log), got keys low, high, step"),
    ({"lr": []}, "[search] lr in e.toml has no choices"),
    ({"lr": 0.1}, "[search] lr in e.toml must be { low = ..., high = ... [, log = true] }, a list of choices, or false"),
    ({"lr": ["fast"]}, "[search] lr in e.toml must be a number, got 'fast'"),
    ({"score": {"low": 0, "high": 1}}, "score is not a number: give a list of choices"),
    ({"ccl": {"temperature": [0.1]}}, "[search.ccl] temperature in e.toml: loss 'ccl' does not take temperature"),
    ({"ccl": 3}, "[search.ccl] in e.toml must be a table of dimensions"),
]


@pytest.mark.parametrize("table, message", BAD_SEARCH, ids=[str(i) for i in range(len(BAD_SEARCH))])
def test_a_bad_search_table_is_one_line(table, message):
    with pytest.raises(MMLBenchError, match=re.escape(message)):
        parse_experiment({"search": table}, source="e.toml")


@pytest.mark.parametrize(
    "table, message",
    [
        ({"ccl": {"margin": [0.5, 1.5]}}, "searching margin over 1.5 for ccl: a cosine margin must lie in [-1, 1]"),
        ({"dropout": {"low": 0.0, "high": 1.0}}, "searching dropout over 1 for ccl: --dropout must lie in [0, 1)"),
        ({"ccl": {"negative_weight": {"low": -1.0, "high": 5.0}}}, "--negative-weight must be > 0, got -1.0"),
    ],
)
def test_a_value_the_loss_refuses_is_found_before_anything_runs(table, message):
    tables = parse_experiment({"search": table}, source="e.toml").search
    with pytest.raises(MMLBenchError, match=re.escape(message)):
        cell_space(RunConfig("planted", loss="ccl").resolved(), tables)


def test_a_grid_axis_cannot_be_searched_too():
    with pytest.raises(MMLBenchError, match=r"lr is both a \[grid\] axis and searched"):
        cell_space(RunConfig("planted", loss="ccl").resolved(), SearchTables(), gridded={"lr"})


@pytest.mark.parametrize(
    "tune, message",
    [
        ({"trials": 0}, "[tune] of e.toml: --trials must be a whole number >= 1, got 0"),
        ({"seeds": 2.5}, "[tune] of e.toml: --seeds must be a whole number >= 1, got 2.5"),
        ({"pruner": "mediam"}, "unknown pruner 'mediam'. Did you mean 'median'?"),
        ({"trails": 3}, "unknown key in [tune] of e.toml 'trails'. Did you mean 'trials'?"),
    ],
)
def test_a_bad_tune_table_is_one_line(tune, message):
    with pytest.raises(MMLBenchError, match=re.escape(message)):
        parse_experiment({"tune": tune}, source="e.toml")


def test_the_manual_lists_every_default_range_with_its_source():
    """docs/tune.md's table is the registries' defaults, row for row (losses sharing a range share a row)."""
    from pathlib import Path

    from mmlbench.plugins.search import SHARED

    page = (Path(__file__).resolve().parents[1] / "docs" / "tune.md").read_text(encoding="utf-8")
    rows = [f"| `{name}` | all | {dimension.describe()} | {dimension.source} |" for name, dimension in SHARED.items()]
    shared: dict[tuple[str, str, str], list[str]] = {}
    for loss, spec in LOSSES.items():
        for name, dimension in spec.search.items():
            shared.setdefault((name, dimension.describe(), dimension.source), []).append(loss)
    rows += [f"| `{name}` | {', '.join(losses)} | {text} | {source} |" for (name, text, source), losses in shared.items()]
    missing = [row for row in rows if row not in page]
    assert not missing, missing


def test_the_fair_gowalla_preset_gives_every_cell_the_same_budget_on_a_validation_slice():
    from mmlbench.data.registry import SLICES
    from mmlbench.plan.experiment import read_experiment
    from mmlbench.plan.presets import preset_path

    for quick, dataset, trials, epochs in ((False, "gowalla-v10", 20, 100), (True, "gowalla-u10", 8, 10)):
        experiment = read_experiment(preset_path("fair-gowalla"), quick=quick)
        configs = experiment.configs()
        assert {(c.loss, c.negatives) for c in configs} == {
            (loss, n) for loss in ("ccl", "mmcl", "ssm", "bsl", "bpr", "bce") for n in (10, 100)
        }
        assert {(c.dataset, c.epochs, c.model) for c in configs} == {(dataset, epochs, "mf")} and SLICES[dataset].valid_fraction
        assert experiment.tune == {"trials": trials, "seeds": 3, "pruner": "median"}
        for config in configs:  # every default space valid for its cell
            assert cell_space(config, experiment.search)
