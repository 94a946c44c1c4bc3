"""Settings from one source: every RunConfig field is a `train` option, with help, choices and
defaults taken from the field or the plug-in registries; the hash covers what changes results."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest
from typer.testing import CliRunner

from mmlbench.cli import app
from mmlbench.cli.settings import split_command_line
from mmlbench.config import RunConfig
from mmlbench.config_checks import option_name
from mmlbench.errors import MMLBenchError
from mmlbench.plugins.losses import LOSSES

runner = CliRunner()
WIDE = {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}


@pytest.fixture(scope="module")
def train_help() -> str:
    result = runner.invoke(app, ["train", "--help"], env=WIDE)
    assert result.exit_code == 0
    return result.output


@pytest.mark.parametrize("field", fields(RunConfig), ids=lambda f: f.name)
def test_every_field_is_an_option_with_help(train_help, field):
    option = option_name(field.name)
    line = next((line for line in train_help.splitlines() if line.lstrip("│ ").startswith(f"{option} ")), None)
    assert line is not None, f"no {option} option"
    assert field.metadata["help"].split(",")[0].removesuffix(".") in line


def test_defaults_and_choices_come_from_the_field_and_the_registries(train_help):
    assert (
        f"Sampled negatives per positive (all: every item but the positive, no sampling) [default: {RunConfig.negatives}]."
        in train_help
    )
    assert f"Random seed [default: {RunConfig.seed}]." in train_help
    assert "Similarity: cosine, dot [default: cosine]." in train_help
    assert f"Loss: {', '.join(sorted(LOSSES))} [default: ccl]." in train_help
    assert "earlier form): mean, user-attention, user-attention-masked [default: mean for simplex]." in train_help
    assert "[default: 150 for ccl, 700 for mmcl]." in train_help
    assert "[default: 0.75 for popularity]." in train_help


def test_command_line_splits_into_settings_and_grid_by_field_metadata():
    settings, grid = split_command_line(
        {"loss": "ccl,mmcl", "negatives": "10", "ks": "20,10", "epochs": 5, "grad_clip_eps": 1e-5, "logq_correction": True}
    )
    assert grid == {"loss": ["ccl", "mmcl"]}
    assert settings == {"negatives": 10, "ks": (20, 10), "epochs": 5, "grad_clip_eps": 1e-5, "logq_correction": True}
    with pytest.raises(MMLBenchError, match="--k expects int values, got '10,x'"):
        split_command_line({"ks": "10,x"})


def test_the_clip_epsilon_is_a_setting_in_the_hash():
    assert RunConfig("d", grad_clip_eps=1e-5).hash() != RunConfig("d").hash()
    with pytest.raises(MMLBenchError, match="--grad-clip-eps must be > 0"):
        RunConfig("d", grad_clip_eps=0.0).resolved()


@dataclass(frozen=True)
class _Extended(RunConfig):
    future_param: float | None = None  # a parameter a later plug-in might add


def test_hash_ignores_unset_parameters_so_new_ones_do_not_move_old_runs():
    assert _Extended("d").resolved().hash("fp") == RunConfig("d").resolved().hash("fp")
    assert _Extended("d", future_param=1.0).hash("fp") != RunConfig("d").hash("fp")
