"""The manual: the CLI reference generated from the app names every command and option, and the
commands written in the README and the docs are valid invocations of the app."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import click
import pytest
import typer
import yaml

from mmlbench.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _hook():
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _app_commands() -> list[tuple[str, click.Command]]:
    """Every command of the app, walked here with Click alone (not with the hook's walk)."""
    found = []

    def walk(command: click.Command, path: str) -> None:
        found.append((path, command))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "mmlbench")
    return found


def _sections(page: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", page, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def test_the_site_builds_the_cli_reference_with_the_hook():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert "docs/hooks/cli_reference.py" in config["hooks"]
    assert _hook().MARKER in (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")


def test_the_cli_reference_names_every_command_and_option():
    hook = _hook()
    page = hook.on_page_markdown((DOCS / "reference" / "cli.md").read_text(encoding="utf-8"))
    assert hook.MARKER not in page
    sections = _sections(page)
    commands = _app_commands()
    assert {"mmlbench train", "mmlbench runs prune"} <= {path for path, _ in commands}
    for path, command in commands:
        assert path in sections, f"no section for {path}"
        body = sections[path]
        assert (command.help or "").split("\n")[0].replace("\\[", "[").replace("'", "&#x27;") in body
        for param in command.params:
            names = [param.metavar or param.name] if param.param_type_name == "argument" else param.opts + param.secondary_opts
            for name in names:
                assert re.search(rf"<code>[^<]*{re.escape(name)}\b", body, re.IGNORECASE), f"{path}: {name} missing"


def test_a_new_option_shows_up_in_the_reference():
    """The page follows the app: an option added to a command is listed without touching the docs."""
    extra = typer.Typer()

    @extra.command()
    def hello(shout: bool = typer.Option(False, "--shout", help="Say it loud.")) -> None:
        """Say hello."""

    @extra.command()
    def bye() -> None:
        """Say bye."""

    page = _hook().render(extra)
    assert "<code>--shout</code></td><td>Say it loud." in _sections(page)["mmlbench hello"]
    assert "Say bye." in _sections(page)["mmlbench bye"]
