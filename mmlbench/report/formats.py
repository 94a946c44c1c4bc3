"""What `compare` can write, in one place: the table renderers and the plot file formats.

A new table format is one entry in RENDERERS plus its `Comparison -> str` function in
`report.render` (for people) or `report.machine` (for programs); the CLI takes its `--format` choices, suffix lookup and messages from here.
This module imports nothing heavy, so the CLI can build its choices and check file names
before any work; the renderer itself is imported only when a table is rendered.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmlbench.console import OutputFormat
from mmlbench.errors import INPUT_ERROR, MMLBenchError

if TYPE_CHECKING:
    from mmlbench.report.compare import Comparison


@dataclass(frozen=True)
class Renderer:
    """A table format: the file suffixes that select it and the function that writes it.

    The function lies in `report.render`, or in `report.machine` for a format read by programs,
    whose footer (protocol first) is also printed to stderr for the person running the command.
    """

    suffixes: tuple[str, ...]
    function: str
    machine: bool = False

    def render(self, comparison: Comparison) -> str:
        module = importlib.import_module("mmlbench.report.machine" if self.machine else "mmlbench.report.render")
        return getattr(module, self.function)(comparison)


# Named as every command names its --format (console.OutputFormat), with markdown besides.
RENDERERS = {
    OutputFormat.table.value: Renderer((".txt",), "to_text"),  # coloured on a terminal, plain text in a file
    "markdown": Renderer((".md", ".markdown"), "to_markdown"),
    OutputFormat.csv.value: Renderer((".csv",), "to_csv", machine=True),
    OutputFormat.json.value: Renderer((".json",), "to_json", machine=True),
}
DEFAULT_RENDERER = OutputFormat.table.value

# matplotlib's savefig format for each plot suffix.
PLOT_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def _refuse(message: str) -> MMLBenchError:
    return MMLBenchError(message, exit_code=INPUT_ERROR)


def renderer_for_suffix(suffix: str) -> str | None:
    """The renderer a file suffix selects ('.MD' -> 'markdown'), if any."""
    return next((name for name, spec in RENDERERS.items() if suffix.lower() in spec.suffixes), None)


def table_renderer(output: Path | None, name: str | None) -> str:
    """The renderer for --format NAME and --output FILE: named, else from the suffix, else table.

    An unknown suffix needs an explicit --format; a suffix naming another format is refused.
    """
    by_suffix = renderer_for_suffix(output.suffix) if output is not None else None
    if output is not None and by_suffix is None and name is None:
        suffixes = [suffix for spec in RENDERERS.values() for suffix in spec.suffixes]
        raise _refuse(
            f"--output {output}: unknown suffix '{output.suffix}'; use {', '.join(suffixes)} or pass --format"
        )
    if name is not None and by_suffix is not None and by_suffix != name:
        raise _refuse(f"--output {output} means {by_suffix}, but --format is {name}")
    return name or by_suffix or DEFAULT_RENDERER


def plot_format(path: Path, option: str = "--plot") -> str:
    """matplotlib's format for a plot file, from its suffix; other suffixes are refused."""
    chosen = PLOT_FORMATS.get(Path(path).suffix.lower())
    if chosen is None:
        *others, last = PLOT_FORMATS
        raise _refuse(f"{option} {path}: unknown suffix '{Path(path).suffix}'; use {', '.join(others)} or {last}")
    return chosen
