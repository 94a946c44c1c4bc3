"""The manual: the CLI reference generated from the app names every command and option, and the
commands written in the README and the docs are valid invocations of the app."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
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


# --- the README and the docs pages as written ---------------------------------------------------

README = ROOT / "README.md"
PAGES = sorted(DOCS.rglob("*.md"))
FENCE = re.compile(r"^```\w*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _code_blocks(path: Path) -> list[str]:
    return FENCE.findall(path.read_text(encoding="utf-8"))


def _prose(path: Path) -> str:
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def _invocations(path: Path) -> list[list[str]]:
    """Each `mmlbench ...` command of the file's code blocks, continuations joined, comments
    dropped; in a synopsis, optional parts ([--dry-run]) and '...' are left out."""
    found = []
    for block in _code_blocks(path):
        for line in block.replace("\\\n", " ").splitlines():
            match = re.match(r"\s*(?:OMP_NUM_THREADS=\d+ )?(?:mmlbench|python3? -m mmlbench) (.*)", line)
            if match:
                args = shlex.split(match.group(1), comments=True)
                found.append([arg for arg in args if "[" not in arg and "]" not in arg and arg != "..."])
    return found


def _parse(args: list[str]) -> None:
    """Parse a command line with the app's own Click parser, down to the subcommand; nothing runs."""
    command = typer.main.get_command(app)
    context = command.make_context("mmlbench", list(args), resilient_parsing=False)
    while hasattr(command, "resolve_command") and _rest(context):
        name, command, rest = command.resolve_command(context, _rest(context))
        context = command.make_context(name, rest, parent=context)


def _rest(context) -> list[str]:
    """What a group leaves for its subcommand (Click 8.2 renamed protected_args to _protected_args)."""
    protected = getattr(context, "_protected_args", None)
    return [*(context.protected_args if protected is None else protected), *context.args]


README_COMMANDS = _invocations(README)
DOCS_COMMANDS = [(page, args) for page in PAGES for args in _invocations(page)]


def test_the_readme_stays_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 300


def test_the_readme_has_an_example_of_every_command():
    commands = {args[0] for args in README_COMMANDS}
    assert set(typer.main.get_command(app).commands) <= commands


@pytest.mark.parametrize("args", README_COMMANDS, ids=[" ".join(a[:2]) for a in README_COMMANDS])
def test_every_readme_command_is_a_valid_invocation(args):
    try:
        _parse(args)
    except Exception as exc:  # Click's UsageError, from typer's copy of click
        pytest.fail(f"mmlbench {' '.join(args)}: {exc}")


@pytest.mark.parametrize(("page", "args"), DOCS_COMMANDS, ids=[f"{p.stem}-{i}" for i, (p, _) in enumerate(DOCS_COMMANDS)])
def test_every_docs_command_is_a_valid_invocation(page, args):
    try:
        _parse(args)
    except Exception as exc:
        pytest.fail(f"{page.name}: mmlbench {' '.join(args)}: {exc}")


def test_a_wrong_command_is_caught():
    """The parse above fails on what the app refuses: a renamed option, a bad choice, a stray argument."""
    for args in (["train", "--loss-name", "ccl"], ["compare", "--format", "xml"], ["runs", "show"], ["evaluate", "a", "b"]):
        with pytest.raises(Exception):
            _parse(args)
    _parse(["runs", "prune", "--failed", "--dry-run"])


def _headings(path: Path) -> set[str]:
    """Anchors of a page's headings, as GitHub and mkdocs' toc both make them for plain titles."""
    slugs = set()
    for title in re.findall(r"^#+ (.+)$", _prose(path), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower().replace("`", ""))
        slugs.add(re.sub(r"[\s-]+", "-", slug).strip("-"))
    return slugs


def test_every_relative_link_of_the_readme_reaches_a_file_and_heading():
    """docs/ pages are checked by `mkdocs build --strict`; the README is not part of the site."""
    links = re.findall(r"\]\(([^)\s]+)\)", _prose(README))
    local = [link for link in links if not re.match(r"\w+://", link)]
    assert any(link.startswith("docs/") for link in local)
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else README
        assert target.exists(), f"README links to {path}, which the repository lacks"
        if anchor:
            assert anchor in _headings(target), f"README links to {link}: no such heading"


_CODE = re.compile(r"(?<![\w/.-])((?:mmlbench|benchmarks|tests|docs|\.ci)/[\w.\-/]*|(?:engine|plugins|executors|report|data|cli)/\w+\.py)")
_DATA = re.compile(r"(?<![\w/.-])(results/(?:baselines|paper)/[\w.\-/]*)")


def test_every_file_the_readme_and_the_docs_cite_is_in_the_repository():
    """Code and committed results named in backquotes, and scripts named in code blocks, exist
    (a module path such as engine/models.py is read under mmlbench/); so do the .md files named."""
    cited = set()
    for path in [README, *PAGES]:
        prose = _prose(path)
        spans = re.findall(r"`([^`]+)`", prose)
        cited |= {(path.name, m) for span in spans for m in _CODE.findall(span) + _DATA.findall(span)}
        cited |= {(path.name, m) for block in _code_blocks(path) for m in _CODE.findall(block)}
        cited |= {(path.name, m) for m in re.findall(r"\b([\w-]+\.md)\b", prose)}
    assert ("fidelity.md", "engine/models.py") in cited and ("README.md", "tests/test_layers.py") in cited
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    names = {Path(name).name for name in tracked} | {path.name for path in PAGES}
    for page, cited_path in sorted(cited):
        if cited_path.endswith(".md") and "/" not in cited_path:
            assert cited_path in names, f"{page} cites {cited_path}, which the repository lacks"
        else:
            assert (ROOT / cited_path).exists() or (ROOT / "mmlbench" / cited_path).exists(), f"{page} cites {cited_path}"


def test_the_readme_results_table_is_what_compare_prints_from_the_committed_runs(tmp_path):
    """The headline table is the committed runs' table, as its caption's command prints it."""
    from typer.testing import CliRunner

    readme = README.read_text(encoding="utf-8")
    caption = re.search(r"`(mmlbench compare\s+results/paper/gowalla-cpu-quick-loss-zoo\s+--preset loss-zoo-gowalla)`", readme)
    assert caption, "the caption's command"
    table = tmp_path / "table.md"
    args = shlex.split(caption.group(1))[1:] + ["--format", "markdown", "--output", str(table)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = table.read_text(encoding="utf-8").splitlines()
    rows = [line for line in printed if line.startswith("| ")]
    assert len(rows) == 10 and rows[0].startswith("| loss | negatives=0 recall@20")
    for row in rows:
        assert row in readme.splitlines(), f"README's table lacks: {row}"
