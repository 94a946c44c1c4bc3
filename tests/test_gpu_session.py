"""benchmarks/gpu_session.sh runs only where a GPU is lent, minutes at a time: every command in
it must name options its program accepts, so that a renamed option fails here and not there."""

from __future__ import annotations

import importlib
import re
import shlex
import sys
from pathlib import Path

import click
import pytest
import typer

from mmlbench.cli import app

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"
_PROGRAM = re.compile(r"python3 (?:benchmarks/(?P<bench>\w+)\.py|-m mmlbench (?P<command>\w+))(?P<args>[^|;>]*)")


def _lines() -> list[str]:
    """The script's lines, continuations joined, `bench` calls spelled out, ${X:-default} as default."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    bench = re.search(r"bench\(\) \{ timeout \d+ (python3 benchmarks/bench_engine\.py[^|;]*?)\"\$@\"", text)
    assert bench, "the bench() helper of gpu_session.sh"
    lines = []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or line.lstrip().startswith("bench()"):
            continue
        line = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", line)
        lines.append(re.sub(r"^(\s*)bench ", lambda m: m.group(1) + bench.group(1) + " ", line))
    return lines


def _commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for line in _lines():
        for match in _PROGRAM.finditer(line):
            args = shlex.split(re.sub(r"\s2$", "", match.group("args").strip()))
            found.append(("bench", match.group("bench"), args) if match.group("bench") else ("cli", match.group("command"), args))
    return found


COMMANDS = _commands()


def test_the_script_was_read():
    kinds = {(kind, name) for kind, name, _ in COMMANDS}
    assert {("bench", "bench_engine"), ("bench", "lockstep_bench"), ("bench", "cuda_check"), ("cli", "train"), ("cli", "compare")} <= kinds


@pytest.mark.parametrize(("kind", "name", "args"), COMMANDS, ids=[f"{n}-{i}" for i, (_, n, _) in enumerate(COMMANDS)])
def test_every_command_of_the_gpu_session_parses(kind, name, args):
    if kind == "cli":
        command = typer.main.get_command(app).commands[name]
        try:
            command.make_context(name, list(args))
        except click.UsageError as exc:
            pytest.fail(f"mmlbench {name} {' '.join(args)}: {exc.format_message()}")
    elif name == "cuda_check":
        assert len(args) == 1  # its work folder
    else:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        try:
            module = importlib.import_module(name)
        finally:
            sys.path.remove(str(ROOT / "benchmarks"))
        module.build_parser().parse_args(args)  # SystemExit (a failure here) on an unknown option
