"""`mmlbench tune`: the grid of `train`, each cell searched with the same budget on validation, its best setting tested once."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from mmlbench import api
from mmlbench.cli.options import (
    AddressOption,
    ConnectTimeoutOption,
    DataDirOption,
    DeviceOption,
    EvalBatchUsersOption,
    NoCudaGraphsOption,
    NoFetchOption,
    QuickOption,
    QuietOption,
    SourceOption,
)
from mmlbench.cli.render_tune import report_plan, report_tune
from mmlbench.cli.settings import SETTINGS, setting_parameters, split_command_line
from mmlbench.console import OutputFormat

NAME = "tune"
NO_ARGS_IS_HELP = True


def _tune(
    settings: dict[str, Any],
    *,
    trials: Annotated[int | None, typer.Option(help="Finished trials (completed, pruned or failed) per cell, the same for every cell [default: the experiment's [tune], else 20].", show_default=False)] = None,
    seeds: Annotated[int | None, typer.Option(help="Final seeds of each cell's best setting, tested once: base seed, base + 1, ... [default: [tune], else 3].", show_default=False)] = None,
    pruner: Annotated[str | None, typer.Option(help="Stops trials early on their per-epoch validation value: median, hyperband or none [default: [tune], else median].", show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG/PDF/SVG by suffix: each cell's search, the validation value by trial and the best so far.", dir_okay=False, show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(help="Experiment file (TOML): settings, grid, per-loss parameters, [search] and [tune].")] = None,
    preset: Annotated[str | None, typer.Option(help="A packaged experiment file, see `train --list-presets`.")] = None,
    quick: QuickOption = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print each cell's study and search space, then exit.")] = False,
    checkpoint_every: Annotated[float, typer.Option(metavar="SECONDS", help="Write a trial's resume checkpoint after an epoch at most every SECONDS (0: every epoch), and whenever it stops short.")] = 60.0,
    jobs: Annotated[int, typer.Option(help="Trials at once on this machine (worker processes). --backend local.", min=1)] = 1,
    backend: Annotated[str, typer.Option(help="Where the trials go: local (this machine, --jobs) or ray (a Ray cluster or a local instance; the ray extra).")] = "local",
    address: AddressOption = None,
    gpus_per_run: Annotated[float | None, typer.Option(help="--backend ray: GPUs per trial [default: 1 where the cluster has GPUs and --device is not cpu, else 0].", min=0, show_default=False)] = None,
    cpus_per_run: Annotated[float | None, typer.Option(help="--backend ray: CPUs per trial [default: 1].", min=0, show_default=False)] = None,
    connect_timeout: ConnectTimeoutOption = None,
    device: DeviceOption = "auto",
    eval_batch_users: EvalBatchUsersOption = None,
    no_cuda_graphs: NoCudaGraphsOption = False,
    no_fetch: NoFetchOption = False,
    source: SourceOption = None,
    data_dir: DataDirOption = None,
    results_dir: Annotated[Path | None, typer.Option(help="Run store, where the studies' journals live too [default: $MMLBENCH_RESULTS_DIR or ./results].")] = None,
    quiet: QuietOption = False,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="table, or for scripts json (one document) or csv (one row per cell) on stdout.")] = OutputFormat.table,
) -> None:
    """The tune: `settings` holds the RunConfig-field options by field name (None: not given)."""
    fixed, grid = split_command_line(settings)
    runs = api.Runs(fixed, grid, config=config, preset=preset, quick=quick)
    options = api.TrainOptions(
        device=device.lower(), data_dir=data_dir, results_dir=results_dir, quiet=quiet, checkpoint_every=checkpoint_every,
        eval_batch_users=eval_batch_users, cuda_graphs=not no_cuda_graphs,
    )
    request = api.TuneRequest(trials, seeds, pruner.lower() if pruner else None, plot)
    spread = api.BackendOptions(jobs, address, gpus_per_run, cpus_per_run, connect_timeout=connect_timeout)
    tuned = api.tune(runs, options, request, backend=backend.lower(), spread=spread, fetch=not no_fetch, source=source, dry_run=dry_run)
    if dry_run:
        report_plan(tuned, output_format)
    else:
        report_tune(tuned, output_format)


def command(**options: Any) -> None:
    """Search every cell of a grid with the same budget on the validation split, then test each best setting's seeds once."""
    settings = {f.name: options.pop(f.name) for f in SETTINGS}
    _tune(settings, **options)


# One option per RunConfig field (the grid of `train`), then the options of the tune itself.
command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [*setting_parameters(), *list(inspect.signature(_tune, eval_str=True).parameters.values())[1:]]
)
