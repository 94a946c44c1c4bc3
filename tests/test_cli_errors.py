"""Every error of the command line is one red line on stderr, usage errors included (exit 2, as
Click's), and with `--format json` also one JSON error document on stdout."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mmlbench.cli import app

runner = CliRunner()

USAGE_ERRORS = [
    ["train", "--dataset", "planted", "--jobs", "0"],
    ["train", "--dataset", "planted", "--format", "xml"],
    ["train", "--dataset", "planted", "--epochs", "many"],
    ["train", "--dataset", "planted", "--retries", "1"],
    ["train", "--dataset"],
    ["download", "gowalla", "--retries", "-1"],
    ["preprocess", "--input", "ratings.csv", "--seed", "-1"],
    ["evaluate", "some-run", "--eval-batch-users", "0"],
    ["compare", "--format", "xml"],
    ["runs", "--status", "bogus"],
    ["trian"],
]


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=lambda args: " ".join(args))
def test_a_usage_error_is_one_red_line_and_exit_2(args, tmp_path):
    result = runner.invoke(app, [*args])
    assert result.exit_code == 2
    line = _one_error_line(result.stderr)
    assert "╭" not in result.output and "Usage:" not in result.output
    assert "--help" in line  # where to look instead of the usage lines


def test_a_usage_error_names_the_option_and_value():
    line = _one_error_line(runner.invoke(app, ["train", "--dataset", "planted", "--format", "xml"]).stderr)
    assert "--format" in line and "xml" in line


@pytest.mark.parametrize(
    ("args", "command", "exit_code"),
    [
        (["train", "--dataset", "planted", "--jobs", "0"], "train", 2),
        (["train", "--dataset", "planted", "--lr", "-1"], "train", 1),
        (["evaluate", "nope"], "evaluate", 2),  # an unknown run is bad input, as for `runs show`
        (["compare", "--where", "dataset=nothing-here"], "compare", 2),
        (["runs", "--where", "no-equals-sign"], "runs", 2),
    ],
)
def test_an_error_with_format_json_is_one_json_document_on_stdout(args, command, exit_code, planted_dir, tmp_path):
    where = ["--results-dir", str(tmp_path / "r")] if args[0] != "train" else ["--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r")]
    (tmp_path / "r").mkdir()
    result = runner.invoke(app, [*args, *where, "--format", "json"])
    assert result.exit_code == exit_code
    document = json.loads(result.stdout)
    assert document["command"] == command and document["exit_code"] == exit_code
    assert _one_error_line(result.stderr) == f"error: {document['error']}"


def test_format_json_given_as_one_word_in_capitals_still_gets_the_document():
    result = runner.invoke(app, ["train", "--dataset", "planted", "--jobs", "0", "--format=JSON"])
    assert result.exit_code == 2 and json.loads(result.stdout)["command"] == "train"


def test_a_compare_error_after_the_json_table_adds_no_second_document(planted_dir, tmp_path):
    results = tmp_path / "r"
    train = ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results),
             "--negatives", "5", "--batch-size", "64", "--epochs", "1", "--device", "cpu", "-q"]  # fmt: skip
    assert runner.invoke(app, train).exit_code == 0
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["compare", str(results), "--format", "json", "--plot", str(blocker / "plot.png")])
    assert result.exit_code == 1
    assert "loss" in json.loads(result.stdout)["spec"]["rows"]  # the table, alone


def test_help_is_unchanged():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "Usage:" in result.stdout and "--negatives" in result.stdout


def test_a_command_without_arguments_still_shows_its_help():
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 2 and "Usage:" in result.stdout and not result.stderr.strip()


def test_the_console_script_path_gives_the_same_line():
    proc = subprocess.run(
        [sys.executable, "-m", "mmlbench", "train", "--dataset", "planted", "--jobs", "0", "--format", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["exit_code"] == 2
    _one_error_line(proc.stderr)


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    return result.stdout


def _help_row(text: str, option: str) -> str:
    return next(line for line in text.splitlines() if f" {option} " in line)


def test_help_has_no_double_negative_flags():
    text = _help("train")
    assert "--no-no-" not in text and "--no-quick" not in text and "--no-dry-run" not in text
    assert "--no-resume" in text and "--no-fetch" in text


def test_help_shows_what_a_numeric_list_option_takes():
    text = _help("train")
    assert "<float,...>" in _help_row(text, "--lr") and "<int|all,...>" in _help_row(text, "--negatives")
    assert "<name,...>" in _help_row(text, "--loss") and "<int,...>" in _help_row(text, "--k")
    assert "<int>" in _help_row(text, "--epochs")
    assert "<int,...>" in _help_row(_help("evaluate"), "--k")
