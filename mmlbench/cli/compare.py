"""`mmlbench compare`: tables, significance, plots and the CI regression gate over stored runs.

The report modules (pandas, scipy, matplotlib) are imported inside `command` so that
`mmlbench --help` and the other commands start fast; only `report.formats`, which imports
nothing heavy, is needed up front for the --format choices and the file-suffix checks.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mmlbench import api
from mmlbench.console import documents, err, info, out, warn
from mmlbench.report.formats import DEFAULT_RENDERER, PLOT_FORMATS, RENDERERS, plot_format, table_renderer

if TYPE_CHECKING:
    from mmlbench.report.compare import Comparison

NAME = "compare"
NO_ARGS_IS_HELP = False


# --format choices: the registered renderers (table, json, csv: the names every command uses).
CompareFormat = enum.Enum("CompareFormat", {name: name for name in RENDERERS}, type=str)
_SUFFIX_HELP = ", ".join(f"{name} {'/'.join(spec.suffixes)}" for name, spec in RENDERERS.items())
_PLOT_HELP = "/".join(suffix.lstrip(".").upper() for suffix in PLOT_FORMATS)


def _file_option(help_text: str, *names: str) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help_text, dir_okay=False, show_default=False)


ResultsArgument = Annotated[Path | None, typer.Argument(
    metavar="RESULTS_DIR", show_default=False,
    help="Run store; default --results-dir, then $MMLBENCH_RESULTS_DIR, then ./results.")]
ResultsOption = Annotated[Path | None, typer.Option(
    "--results-dir", show_default=False, help="Run store (same as RESULTS_DIR).")]
RowsOption = Annotated[str | None, typer.Option(
    show_default=False, help="Column(s) whose values make the rows, comma-separated [default: a --preset's, else loss].")]
ColsOption = Annotated[str | None, typer.Option(
    show_default=False, help="Column(s) whose values make the columns, comma-separated [default: a --preset's, else negatives].")]
MetricOption = Annotated[str | None, typer.Option(
    show_default=False, help="Metric column(s), comma-separated [default: a --preset's, else recall@20,ndcg@20].")]
WhereOption = Annotated[list[str] | None, typer.Option(
    show_default=False,
    help="Keep only runs with COLUMN=VALUE; repeatable: other columns narrow, the same column again adds "
         "a value (any of).")]
BaselineOption = Annotated[str | None, typer.Option(
    show_default=False, help="Baseline row, COLUMN=VALUE (e.g. loss=ccl): % change and paired tests against it.")]
AlphaOption = Annotated[float, typer.Option(help="Significance level, after Holm correction.")]
CostOption = Annotated[bool, typer.Option("--cost", help="Add s/epoch, evaluation s and peak memory per cell.")]
FormatOption = Annotated[CompareFormat | None, typer.Option(
    "--format", show_default=False,
    help=f"Output format (default: {DEFAULT_RENDERER}, or from the --output suffix: {_SUFFIX_HELP}).")]
OutputOption = Annotated[Path | None, _file_option("Write the table to FILE, not the terminal.", "--output", "-o")]
PlotOption = Annotated[Path | None, _file_option(
    f"{_PLOT_HELP} by suffix: each metric vs the numeric --cols value (a panel each), a line per row, "
    "with n, significance marks, published values and the protocol.")]
CurvesOption = Annotated[Path | None, _file_option(
    f"{_PLOT_HELP} by suffix: per-epoch loss and first metric of each selected run.")]
ExportOption = Annotated[Path | None, _file_option("Write group means to FILE.parquet as a CI baseline.")]
AgainstOption = Annotated[Path | None, _file_option("CI gate: exit 1 if a metric dropped below this baseline.")]
PresetOption = Annotated[str | None, typer.Option(
    show_default=False,
    help="Take rows, cols, metrics, filters, baseline and published numbers from a preset's [report] (see train --list-presets).")]
MaxDropOption = Annotated[str | None, typer.Option(
    show_default=False, help="Allowed drop for --against: absolute (0.02) or relative (5%); default 0.")]
TunedOption = Annotated[bool, typer.Option(
    "--tuned",
    help="The final seeds of `tune` (selection=tuned) beside the untuned runs of the same cells: a row each.")]
AllowMissingOption = Annotated[bool, typer.Option(
    "--allow-missing",
    help="With --against: warn about baseline groups that have no current runs and gate the rest "
         "(without it they fail the gate, exit 1).")]


def command(
    results: ResultsArgument = None,
    results_dir: ResultsOption = None,
    rows: RowsOption = None,
    cols: ColsOption = None,
    metric: MetricOption = None,
    where: WhereOption = None,
    baseline: BaselineOption = None,
    alpha: AlphaOption = 0.05,
    cost: CostOption = False,
    output_format: FormatOption = None,
    output: OutputOption = None,
    plot: PlotOption = None,
    plot_curves: CurvesOption = None,
    export_baseline: ExportOption = None,
    against: AgainstOption = None,
    max_drop: MaxDropOption = None,
    allow_missing: AllowMissingOption = False,
    preset: PresetOption = None,
    tuned: TunedOption = False,
) -> None:
    """Compare stored runs: mean ± std over seeds, % change and paired tests vs a baseline, plots, CI gate.

    Exit codes: 0 success, 1 the --against gate failed (a regression, or a baseline group
    without current runs), 2 bad input or no matching runs.
    """
    from mmlbench.report.selection import fail, parse_where

    if max_drop is not None and against is None:
        raise fail("--max-drop only applies with --against FILE")
    if allow_missing and against is None:
        raise fail("--allow-missing only applies with --against FILE")
    if against is not None and any(x is not None for x in (output, plot, plot_curves, export_baseline)):
        raise fail("--against runs the regression gate alone: drop --output, --plot, --plot-curves, --export-baseline")
    renderer = table_renderer(output, output_format.value if output_format else None)
    for option, path in (("--plot", plot), ("--plot-curves", plot_curves)):
        if path is not None:
            plot_format(path, option)
    request = api.CompareRequest(
        results or results_dir, _names(rows), _names(cols), _names(metric), parse_where(where or []), baseline, alpha,
        cost, preset, plot, plot_curves, export_baseline, tuned,
    )
    if against is not None:
        _report_gate(api.gate(request, against, max_drop or "0"), allow_missing)
        return
    done = api.compare(request, show=lambda comparison: _emit(comparison, renderer, output))
    if plot is not None:
        info(f"wrote {plot}")
    if plot_curves is not None:
        if done.curves_left_out:
            warn(f"no curve for {len(done.curves_left_out)} run(s), left out of the plot: {', '.join(done.curves_left_out)}")
        info(f"wrote {plot_curves}")
    if done.baseline_groups is not None:
        info(f"wrote baseline of {done.baseline_groups} groups to {export_baseline}")


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def _emit(comparison: Comparison, renderer: str, output: Path | None) -> None:
    """Print or write the table with its footer (protocol first, warnings among it), which always reaches the reader.

    Every format carries the footer. Where the table is not a person's text on stdout (a file,
    csv or json), the footer is printed to stderr too; markdown on stdout, often redirected to
    a file, repeats its warnings there.
    """
    from mmlbench.fsutil import write_text_atomic
    from mmlbench.report.render import WARNING, footer_lines, to_rich_table

    if output is None and renderer == DEFAULT_RENDERER:
        out.print(to_rich_table(comparison))  # in colour, at the terminal's width
        return
    text = RENDERERS[renderer].render(comparison)
    if output is None:
        documents.print(text)  # counted: an error after it (a plot) adds no second --format json document
    else:
        write_text_atomic(output, text)
        info(f"wrote {output}")
    if output is None and not RENDERERS[renderer].machine:
        for message in comparison.warnings:
            warn(message)
        return
    for line in footer_lines(comparison):
        if line.startswith(WARNING):
            warn(line.removeprefix(WARNING))
        else:
            err.print(line, markup=False, highlight=False, soft_wrap=True)


def _report_gate(gated: api.Gated, allow_missing: bool) -> None:
    """Exit 1 on a regression or, unless allowed, on a baseline group that has no current runs."""
    from mmlbench.errors import MMLBenchError
    from mmlbench.report import gate

    result, max_drop = gated.result, gated.max_drop
    for note in result.notes:
        warn(note)
    if result.regressions:
        out.print(gate.regression_table(result, max_drop))
    if result.missing_groups and not allow_missing:
        raise MMLBenchError(
            f"{gate.missing_text(result)}; pass --allow-missing to gate only the groups present",
            exit_code=gate.GATE_FAILED,
        )
    if result.missing_groups:
        warn(gate.missing_text(result, ", not checked"))
    if result.regressions:
        raise typer.Exit(gate.GATE_FAILED)
    out.print(
        f"no regressions in {result.checked_groups} groups "
        f"({', '.join(result.metrics)}; max drop {max_drop})",
        markup=False,
        highlight=False,
    )
