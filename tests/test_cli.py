"""The command line as a whole: help, version, module entry point."""

import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mmlbench import __version__
from mmlbench.cli import app

runner = CliRunner()


def test_help_lists_every_subcommand():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("download", "preprocess", "train", "evaluate", "compare"):
        assert name in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mmlbench {__version__}"


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "mmlbench", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert __version__ in proc.stdout


def test_what_the_readme_examples_write_in_the_repository_root_is_ignored_by_git():
    root = Path(__file__).resolve().parents[1]
    manual = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]  # the README and the docs pages
    readme = "\n".join(path.read_text(encoding="utf-8") for path in manual)
    outputs = re.findall(r"--(?:export-topk|output|plot|plot-curves|export-baseline)\s+([^\s`]+)", readme)
    at_root = sorted({path for path in outputs if "/" not in path and path != "FILE"})
    assert "top10.parquet" in at_root  # the quick start's export
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *at_root], cwd=root, capture_output=True, text=True, check=False)
    assert sorted(ignored.stdout.split()) == at_root
