"""`mmlbench preprocess` shows a status line on stderr during its long steps, only on a terminal."""

from __future__ import annotations

import io

import pandas as pd
from rich.console import Console
from typer.testing import CliRunner

from mmlbench import console
from mmlbench.cli import app
from mmlbench.data.generic import GenericOptions
from mmlbench.data.preprocess import preprocess_file
from mmlbench.data.splits import parse_split

runner = CliRunner()
OPTIONS = GenericOptions(user_col="user", item_col="item", split=parse_split("leave-one-out"))


def events(tmp_path):
    path = tmp_path / "events.csv"
    pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 1, 3]}).to_csv(path, index=False)
    return path


def test_status_lines_name_each_step_on_a_terminal(tmp_path, monkeypatch):
    terminal = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=terminal, force_terminal=True, width=100))
    monkeypatch.setattr(console, "show_progress", lambda quiet: True)  # as on a terminal
    preprocess_file(events(tmp_path), "mine", OPTIONS, tmp_path / "data")
    shown = terminal.getvalue()
    assert "mine: reading events.csv" in shown and "mine: writing" in shown


def test_no_status_line_off_a_terminal(tmp_path):
    args = ["--input", str(events(tmp_path)), "--name", "mine", "--user-col", "user", "--item-col", "item"]
    result = runner.invoke(app, ["preprocess", *args, "--split", "leave-one-out", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "reading" not in result.output and "writing" not in result.output
