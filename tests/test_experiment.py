"""Grid expansion, precedence of experiment-file layers, config hashing."""

from __future__ import annotations

import re

import pytest

from mmlbench.config import RunConfig
from mmlbench.errors import MMLBenchError
from mmlbench.data.registry import SLICES
from mmlbench.plan.experiment import Experiment, parse_experiment, read_experiment
from mmlbench.plan.presets import preset_names, preset_path

DOCUMENT = {
    "settings": {"dataset": "d", "epochs": 7, "batch_size": 256},
    "grid": {"loss": ["ccl", "mmcl", "bpr"], "negatives": [10, 100]},
    "losses": {"mmcl": {"negative_weight": 400.0, "margins": [0.6, 0.9], "margin_weights": [0.4, 0.6]}},
    "quick": {"settings": {"epochs": 2}, "grid": {"negatives": [10]}},
}


def test_grid_expands_to_every_combination():
    configs = parse_experiment(DOCUMENT, source="t").configs()
    assert [(c.loss, c.negatives) for c in configs] == [
        ("ccl", 10), ("ccl", 100), ("mmcl", 10), ("mmcl", 100), ("bpr", 10), ("bpr", 100)
    ]
    assert {c.epochs for c in configs} == {7}


def test_per_loss_parameters_apply_only_to_their_loss():
    configs = {c.loss: c for c in parse_experiment(DOCUMENT, source="t").configs()}
    assert configs["mmcl"].negative_weight == 400.0 and configs["mmcl"].margins == (0.6, 0.9)
    assert configs["ccl"].negative_weight == 150.0 and configs["ccl"].margins is None
    assert configs["bpr"].negative_weight is None


def test_command_line_overrides_file_and_per_loss_values():
    experiment = parse_experiment(DOCUMENT, source="t").with_command_line({"negative_weight": 50.0, "negatives": 5}, {"seed": [1, 2]})
    configs = experiment.configs()
    assert len(configs) == 3 * 2  # negatives fixed by the command line, seeds gridded
    assert {c.negative_weight for c in configs if c.loss != "bpr"} == {50.0}
    assert {c.negatives for c in configs} == {5}


def test_quick_variant():
    configs = parse_experiment(DOCUMENT, source="t", quick=True).configs()
    assert {(c.negatives, c.epochs) for c in configs} == {(10, 2)}


def test_hash_ignores_nothing_that_matters():
    base = RunConfig("d").resolved()
    assert base.hash("fp") == RunConfig("d").resolved().hash("fp")
    assert base.hash("fp") != RunConfig("d", lr=2e-4).resolved().hash("fp")
    assert base.hash("fp") != base.hash("other data")
    assert base.hash("fp") != RunConfig("d", seed=1).resolved().hash("fp")
    assert base.hash("fp", with_seed=False) == RunConfig("d", seed=1).resolved().hash("fp", with_seed=False)
    # A parameter the loss does not use does not split runs.
    assert RunConfig("d", loss="bpr", margin=0.3).resolved() == RunConfig("d", loss="bpr").resolved()


def test_row_round_trip():
    config = RunConfig("d", loss="mmcl", ks=(5, 50), monitor="ndcg@50").resolved()
    assert RunConfig.from_row(config.to_row()) == config


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"settings": {"dataset": "d", "learning_rate": 1}}, "unknown key 'learning_rate' in \\[settings\\] of t"),
        ({"settings": {"dataset": "d"}, "grid": {"loss": "ccl"}}, "must be a non-empty list"),
        ({"setings": {}}, "unknown section"),
        ({"grid": {"loss": ["ccl"]}}, "no dataset given"),
    ],
)
def test_bad_experiment_files(document, message):
    with pytest.raises(MMLBenchError, match=message):
        parse_experiment(document, source="t").configs()


def test_unreadable_experiment_file(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("[settings\n")
    with pytest.raises(MMLBenchError, match="cannot read experiment file"):
        read_experiment(bad)
    with pytest.raises(MMLBenchError, match="does not exist"):
        read_experiment(tmp_path / "missing.toml")


def test_unknown_preset_suggests(tmp_path):
    with pytest.raises(MMLBenchError, match="unknown preset"):
        preset_path("paper-gowala")
    assert isinstance(preset_names(), list)


@pytest.mark.parametrize("quick", [False, True])  # the [quick] variant is checked even when not used
@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"quick": {"epochs": 1}}, "unknown key 'epochs' in [quick] of t. (it holds settings"),
        ({"quick": {"setings": {"epochs": 1}}}, "unknown key 'setings' in [quick] of t. Did you mean 'settings'?"),
        ({"quick": {"lr": float("nan")}}, "unknown key 'lr' in [quick] of t"),
        ({"quick": {"settings": {"epoch": 1}}}, "unknown key 'epoch' in [quick.settings] of t. Did you mean 'epochs'?"),
        ({"quick": {"settings": {"lr": float("nan")}}}, "lr in [quick.settings] of t must be a finite number, got nan"),
        ({"quick": {"grid": {"negative": [1]}}}, "unknown key 'negative' in [quick.grid] of t. Did you mean 'negatives'?"),
        ({"quick": {"grid": {"negatives": 5}}}, "[quick.grid] negatives in t must be a non-empty list"),
        ({"quick": {"settings": 5}}, "[quick.settings] in t must be a table, got 5"),
        ({"quick": 1}, "[quick] in t must be a table, got 1"),
        ({"grid": {"los": ["ccl"]}}, "unknown key 'los' in [grid] of t. Did you mean 'loss'?"),
        ({"losses": {"ccl": {"margn": 0.5}}}, "unknown key 'margn' in [losses.ccl] of t. Did you mean 'margin'?"),
        ({"losses": {"ccl": 0.5}}, "[losses.ccl] in t must be a table"),
        ({"report": {"row": ["loss"]}}, "unknown key 'row' in [report] of t. Did you mean 'rows'?"),
        ({"description": 5}, "description in t must be a string"),
    ],
)
def test_every_key_of_every_table_is_checked(document, message, quick):
    document = {"settings": {"dataset": "d"}, "quick": {}, **document}
    with pytest.raises(MMLBenchError, match=re.escape(message)):
        parse_experiment(document, source="t", quick=quick)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": "ten"}, "epochs in [settings] of t must be an integer, got 'ten'"),
        ({"epochs": 1.7}, "epochs in [settings] of t must be an integer, got 1.7"),
        ({"negatives": True}, "negatives in [settings] of t must be an integer or 'all', got true"),
        ({"lr": float("nan")}, "lr in [settings] of t must be a finite number, got nan"),
        ({"l2": float("inf")}, "l2 in [settings] of t must be a finite number, got inf"),
        ({"l2": 1e300}, "l2 in [settings] of t must be 0 or a number within float32's range"),
        ({"min_delta": -1e39}, "min_delta in [settings] of t must be 0 or a number within float32's range"),
        ({"margins": [0.5, 1e-40]}, "(1e-40 is not 0 or a number within float32's range"),
        ({"dataset": 5}, "dataset in [settings] of t must be a string, got 5"),
        ({"ks": 20}, "ks in [settings] of t must be a list of integers, got 20"),
        ({"ks": [10, 2.5]}, "ks in [settings] of t must be a list of integers"),
        ({"seed": 2**64}, "seed in [settings] of t must be an integer that fits in 64 bits"),
    ],
)
def test_experiment_values_are_type_checked(settings, message):
    with pytest.raises(MMLBenchError, match=re.escape(message)):
        parse_experiment({"settings": {"dataset": "d", **settings}}, source="t")


def test_grid_and_loss_table_values_are_type_checked():
    with pytest.raises(MMLBenchError, match=re.escape("[grid] negatives in t must be an integer or 'all', got true")):
        parse_experiment({"settings": {"dataset": "d"}, "grid": {"negatives": [10, True]}}, source="t")
    with pytest.raises(MMLBenchError, match=re.escape("margins in [losses.mmcl] of t must be a list of numbers")):
        parse_experiment({"settings": {"dataset": "d"}, "losses": {"mmcl": {"margins": ["a"]}}}, source="t")


def test_integers_stand_for_floats_and_hash_alike():
    from_int = parse_experiment({"settings": {"dataset": "d", "lr": 1, "dropout": 0}}, source="t").configs()[0]
    assert from_int.lr == 1.0 and isinstance(from_int.lr, float)
    assert from_int.hash("fp") == RunConfig("d", lr=1.0, dropout=0.0).resolved().hash("fp")


def test_unknown_loss_table_is_an_error():
    document = {"settings": {"dataset": "d"}, "losses": {"cll": {"margin": 0.5}}}
    with pytest.raises(MMLBenchError, match="unknown loss in the \\[losses\\] tables of t 'cll'. Did you mean 'ccl'"):
        parse_experiment(document, source="t")


def test_loss_table_with_a_parameter_of_another_loss_is_an_error():
    document = {"settings": {"dataset": "d"}, "losses": {"ccl": {"margins": [0.5]}}}
    with pytest.raises(MMLBenchError, match=re.escape("margins in [losses.ccl] of t: loss 'ccl' does not take it")):
        parse_experiment(document, source="t")


def test_parameter_the_only_loss_ignores_is_an_error():
    experiment = parse_experiment({"settings": {"dataset": "d", "loss": "ccl", "margins": [0.5]}}, source="t")
    with pytest.raises(MMLBenchError, match="--margins does not apply to loss 'ccl' \\(it takes --margin, --negative-weight\\)"):
        experiment.configs()
    command_line = Experiment().with_command_line({"dataset": "d", "loss": "bpr", "temperature": 0.2}, {})
    with pytest.raises(MMLBenchError, match="--temperature does not apply to loss 'bpr' \\(it takes no parameters\\)"):
        command_line.configs()


def test_parameter_in_a_mixed_grid_applies_to_the_losses_that_take_it():
    experiment = Experiment().with_command_line({"dataset": "d", "margin": 0.3}, {"loss": ["ccl", "bpr"]})
    configs = {c.loss: c for c in experiment.configs()}
    assert configs["ccl"].margin == 0.3 and configs["bpr"].margin is None
    nobody = Experiment().with_command_line({"dataset": "d", "temperature": 0.2}, {"loss": ["ccl", "bpr"]})
    with pytest.raises(MMLBenchError, match="--temperature applies to none of the losses run \\(ccl, bpr\\)"):
        nobody.configs()


def test_seeds_count_from_the_command_line_seed_then_the_file_then_the_default():
    from_file = parse_experiment({"settings": {"dataset": "d", "seed": 7}}, source="t")
    assert [c.seed for c in from_file.with_seeds(3).configs()] == [7, 8, 9]
    overridden = from_file.with_command_line({"seed": 100}, {}).with_seeds(2)
    assert [c.seed for c in overridden.configs()] == [100, 101]
    default = Experiment().with_command_line({"dataset": "d"}, {}).with_seeds(2)
    assert [c.seed for c in default.configs()] == [RunConfig.seed, RunConfig.seed + 1]


def test_seeds_refuse_a_seed_list_and_zero():
    gridded = parse_experiment({"settings": {"dataset": "d"}, "grid": {"seed": [1, 2]}}, source="t")
    with pytest.raises(MMLBenchError, match="not both"):
        gridded.with_seeds(2)
    with pytest.raises(MMLBenchError, match="--seeds must be >= 1, got 0"):
        Experiment().with_seeds(0)


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("name", preset_names())
def test_every_packaged_preset_expands_to_checked_configs(name, quick):
    configs = read_experiment(preset_path(name), quick=quick).configs()
    assert configs and len({c.hash() for c in configs}) == len(configs)  # no two cells alike
    if quick:  # CPU-sized: few epochs on a whole dataset, more on a registered slice (a tenth of the pairs)
        assert max((c.epochs for c in configs if c.dataset not in SLICES), default=0) <= 5
        assert max(c.epochs for c in configs) <= 20


AUTHOR_RUNS = {
    "settings": {"dataset": "d", "patience": 3, "plateau_lr_factor": 0.1},
    "grid": {"loss": ["ccl", "mmcl", "bpr"], "negatives": [10, 100]},
    "losses": {
        "ccl": {"negative_weight": 150.0, "plateau_lr_factor": 1, "patience": 200},
        "mmcl": {"plateau_lr_factor": 1, "patience": 200},
    },
    "cells": [{"where": {"loss": "mmcl", "negatives": 100}, "patience": 3}],
}


def _schedules(document, **command_line):
    experiment = parse_experiment(document, source="t").with_command_line(command_line, {})
    return {(c.loss, c.negatives): (c.plateau_lr_factor, c.patience) for c in experiment.configs()}


def test_loss_tables_carry_run_settings_and_cells_override_them_for_their_runs():
    assert _schedules(AUTHOR_RUNS) == {
        ("ccl", 10): (1.0, 200), ("ccl", 100): (1.0, 200),
        ("mmcl", 10): (1.0, 200), ("mmcl", 100): (1.0, 3),  # the [[cells]] entry
        ("bpr", 10): (0.1, 3), ("bpr", 100): (0.1, 3),  # [settings]
    }
    assert set(_schedules(AUTHOR_RUNS, patience=7).values()) == {(1.0, 7), (0.1, 7)}  # the command line wins


def test_a_cell_matches_resolved_values_and_the_command_line_grid():
    document = {
        "settings": {"dataset": "d", "loss": "ccl"},
        "cells": [{"where": {"margin": 0.9, "negatives": 100}, "lr": 2}],  # 0.9: ccl's default margin
    }
    experiment = parse_experiment(document, source="t").with_command_line({}, {"negatives": [10, 100]})
    assert {c.negatives: c.lr for c in experiment.configs()} == {10: 1e-4, 100: 2.0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"losses": {"ccl": {"loss": "mmcl"}}}, "loss in [losses.ccl] of t: a table of settings cannot change the run's loss"),
        ({"losses": {"ccl": {"negatives": 5}}}, "negatives in [losses.ccl] of t is also a [grid] key, whose values would win"),
        ({"cells": {"where": {"loss": "ccl"}, "lr": 1}}, "cells in t must be an array of tables: write each entry as [[cells]]"),
        ({"cells": [{"lr": 1}]}, "[[cells]] entry 1 of t needs a non-empty where"),
        ({"cells": [{"where": {"loss": "ccl"}}]}, "[[cells]] entry 1 of t needs a non-empty where = { ... } and at least one setting"),
        ({"cells": [{"where": {"los": "ccl"}, "lr": 1}]}, "unknown setting in [[cells]] entry 1 of t 'los'"),
        ({"cells": [{"where": {"loss": "cll"}, "lr": 1}]}, "Did you mean 'ccl'"),
        ({"cells": [{"where": {"score": "cosin"}, "lr": 1}]}, "Did you mean 'cosine'"),
        ({"cells": [{"where": {"negatives": "ten"}, "lr": 1}]}, "where negatives in [[cells]] entry 1 of t must be an integer"),
        ({"cells": [{"where": {"lr": 1}, "lr": 2}]}, "lr in [[cells]] entry 1 of t is also in its where"),
        ({"cells": [{"where": {"negatives": 10}, "margin": 0.5}]}, "margin in [[cells]] entry 1 of t: a loss parameter needs the loss"),
        ({"cells": [{"where": {"loss": "bpr"}, "margin": 0.5}]}, "margin in [[cells]] entry 1 of t: a loss parameter needs the loss"),
        ({"cells": [{"where": {"loss": "ccl"}, "negatives": 5}]}, "negatives in [[cells]] entry 1 of t is also a [grid] key"),
        ({"cells": [{"where": {"loss": "ccl"}, "patience": 0.5}]}, "patience in [[cells]] entry 1 of t must be an integer"),
    ],
)
def test_bad_loss_tables_and_cells_are_one_line(change, message):
    with pytest.raises(MMLBenchError, match=re.escape(message)):
        parse_experiment({**AUTHOR_RUNS, **change}, source="t")


def _preset_schedules(name: str) -> dict[tuple, tuple]:
    return {
        (c.dataset, c.loss, c.negatives): (c.plateau_lr_factor, c.patience, c.batch_size, c.l2)
        for c in read_experiment(preset_path(name)).configs()
    }


@pytest.mark.parametrize(("name", "batch_size", "l2"), [("paper-gowalla", 256, 1e-8), ("paper-yelp2018", 512, 1e-9)])
def test_paper_presets_train_ccl_and_mmcl_as_the_authors_notebooks(name, batch_size, l2):
    """mgulcin/mmcl: every CCL and MMCL cell reduce_lr_on_plateau False, patience 200, except the
    Gowalla MMCL run at 100 negatives (patience 3); the baselines keep RecZoo's decay."""
    dataset = name.removeprefix("paper-")
    for (_, loss, negatives), schedule in _preset_schedules(name).items():
        if loss in ("ccl", "mmcl"):
            patience = 3 if (dataset, loss, negatives) == ("gowalla", "mmcl", 100) else 200
            assert schedule == (1.0, patience, batch_size, l2), (loss, negatives)
        else:
            assert schedule == (0.1, 3, batch_size, l2), (loss, negatives)


def test_the_bars_preset_is_reczoos_mf_ccl_on_both_datasets():
    assert _preset_schedules("bars-mf-ccl") == {
        ("gowalla", "ccl", 800): (0.1, 3, 256, 1e-8),
        ("yelp2018", "ccl", 800): (0.1, 3, 512, 1e-9),
    }
