"""Bracketed text in help and messages is shown verbatim, not eaten as rich markup."""

from __future__ import annotations

import importlib
import inspect

import pytest
from typer.models import ParameterInfo
from typer.testing import CliRunner

from mmlbench import console
from mmlbench.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "300", "TERMINAL_WIDTH": "300"}  # one help line per option


def test_train_help_keeps_the_bracketed_defaults():
    result = runner.invoke(app, ["train", "--help"], env=WIDE)
    assert result.exit_code == 0
    assert "Maximum epochs [default: 100]." in result.output
    assert "The experiment's CPU-sized [quick] variant." in result.output


@pytest.mark.parametrize("name", ["download", "preprocess", "train", "evaluate", "compare"])
def test_every_bracketed_help_text_is_shown_whole(name):
    module = importlib.import_module(f"mmlbench.cli.{name}")
    bracketed = [
        info.help
        for parameter in inspect.signature(module.command, eval_str=True).parameters.values()
        for info in getattr(parameter.annotation, "__metadata__", ())
        if isinstance(info, ParameterInfo) and "[" in (info.help or "")
    ]
    result = runner.invoke(app, [name, "--help"], env=WIDE)
    assert result.exit_code == 0
    for text in bracketed:
        assert text in result.output


def test_error_line_with_brackets_is_verbatim(tmp_path):
    experiment = tmp_path / "exp.toml"
    experiment.write_text('[settings]\ndataset = "d"\n[grid]\nloss = "ccl"\n')
    result = runner.invoke(app, ["train", "--config", str(experiment), "--results-dir", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert f"error: [grid] loss in {experiment} must be a non-empty list" in result.stderr


def test_warnings_and_notes_are_verbatim(capsys):
    console.warn("[losses.mmcl] sums to [1.2]")
    console.info("wrote [red]x[/red].csv")
    captured = capsys.readouterr().err
    assert "warning: [losses.mmcl] sums to [1.2]" in captured
    assert "wrote [red]x[/red].csv" in captured


def test_sweep_table_notes_are_verbatim(capsys):
    from mmlbench.cli.render_train import print_sweep
    from mmlbench.config import RunConfig
    from mmlbench.plan.sweep import SweepEntry, SweepResult

    print_sweep(SweepResult.of([SweepEntry(RunConfig("d"), error="RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0")]))
    assert "[enforce fail at alloc_cpu.cpp:127]" in capsys.readouterr().out


def test_long_messages_stay_one_line(capsys):
    path = "/tmp/" + "x" * 200 + "/train.txt"
    console.warn(f"{path}: dropped 1 duplicate item(s) (first on line 4)")
    console.info(f"wrote {path}")
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {path}: dropped 1 duplicate item(s) (first on line 4)", f"wrote {path}"
    ]
