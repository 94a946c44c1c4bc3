"""mkdocs hook: the CLI reference, generated from the Typer app when the site is built.

`docs/reference/cli.md` holds a marker; this hook replaces it with every command of
`mmlbench.cli.app` (the root, each subcommand, each `runs` subcommand): its usage line, its
help text and a table of its arguments and options, each as `--help` prints it (Click's help
record: names, metavar, help, default). Nothing is written by hand, so the page cannot drift
from `--help`; tests/test_docs.py checks that it names every command and option.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

MARKER = "<!-- cli-reference -->"
PROGRAM = "mmlbench"


def on_page_markdown(markdown: str, page: Any = None, config: Any = None, files: Any = None, **_: Any) -> str:
    """mkdocs event: the page holding the marker gets the generated reference in its place."""
    if MARKER not in markdown:
        return markdown
    from mmlbench.cli import app

    return markdown.replace(MARKER, render(app))


def commands(app: Any) -> Iterator[tuple[str, Any, Any]]:
    """(command path, Click command, its context) for the root and every command below it, in
    the order `--help` lists them."""
    import typer

    root = typer.main.get_command(app)
    yield from _walk(root, root.make_context(PROGRAM, [], resilient_parsing=True), PROGRAM)


def _walk(command: Any, context: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    yield path, command, context
    for name in getattr(command, "list_commands", lambda _: [])(context):
        sub = command.get_command(context, name)
        if sub is None or sub.hidden:
            continue
        yield from _walk(sub, sub.make_context(name, [], parent=context, resilient_parsing=True), f"{path} {name}")


def render(app: Any) -> str:
    """The reference: one section per command."""
    return "\n".join(_section(path, command, context) for path, command, context in commands(app))


def _section(path: str, command: Any, context: Any) -> str:
    usage = " ".join([path, *command.collect_usage_pieces(context)])
    lines = [f"## {path}", "", "```", usage, "```", ""]
    for paragraph in _plain(command.help or "").split("\n\n"):
        lines += [f"<p>{html.escape(' '.join(paragraph.split()))}</p>", ""]
    rows = [_row(param, context) for param in command.get_params(context) if not getattr(param, "hidden", False)]
    rows = [row for row in rows if row]
    if rows:
        lines += ["<table>", "<thead><tr><th>argument or option</th><th>meaning</th></tr></thead>", "<tbody>"]
        lines += rows + ["</tbody>", "</table>", ""]
    subcommands = getattr(command, "list_commands", lambda _: [])(context)
    if subcommands:
        names = ", ".join(f"[{name}](#{_anchor(f'{path} {name}')})" for name in subcommands)
        lines += [f"Commands: {names}.", ""]
    return "\n".join(lines)


def _row(param: Any, context: Any) -> str:
    record = param.get_help_record(context)
    if record is None:
        return ""
    names, help_text = record
    return f"<tr><td><code>{html.escape(names)}</code></td><td>{html.escape(_plain(help_text))}</td></tr>"


def _plain(text: str) -> str:
    """Help text as the terminal shows it: the app escapes '[' so rich prints it as written."""
    return text.replace("\\[", "[")


def _anchor(title: str) -> str:
    """The id mkdocs' toc extension gives a heading made of words and spaces."""
    return title.lower().replace(" ", "-")
