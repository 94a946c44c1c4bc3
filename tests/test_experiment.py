"""Grid expansion, precedence of experiment-file layers, config hashing."""

from __future__ import annotations

import pytest

from mmlbench.config import RunConfig
from mmlbench.errors import MMLBenchError
from mmlbench.experiment import parse_experiment, preset_names, read_experiment, preset_path

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
        ({"settings": {"dataset": "d", "learning_rate": 1}}, "unknown setting in t 'learning_rate'"),
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
