"""Commands that do not train never import torch: `--help`, `download --list`, `compare`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import compare_support as cs

ROOT = Path(__file__).resolve().parents[1]
# Runs the CLI in a fresh interpreter, then says whether torch was imported on the way.
SCRIPT = """
import sys
from mmlbench.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    print("exit:", exc.code)
print("torch imported:", "torch" in sys.modules)
"""


def _imports_torch(*args: str, exit_code: int | None = 0) -> bool:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("torch imported:"), result.stdout + result.stderr
    if exit_code is not None:
        assert f"exit: {exit_code}" in result.stdout, result.stdout + result.stderr
    return last.endswith("True")


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["evaluate", "--help"], ["download", "--list"]], ids=" ".join)
def test_commands_that_do_not_train_do_not_import_torch(args):
    assert not _imports_torch(*args)


def test_compare_does_not_import_torch(tmp_path):
    results = cs.make_store(tmp_path)
    assert not _imports_torch("compare", str(results), "--baseline", "loss=ccl")


def test_the_probe_sees_torch_when_a_command_needs_it():
    assert _imports_torch("train", "--dataset", "nowhere", "--data-dir", "/nonexistent", "--dry-run", exit_code=None)
