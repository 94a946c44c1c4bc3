"""`mmlbench train`: one run, a grid of runs, or an experiment file / preset."""

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
from mmlbench.cli.render_train import report_plan, report_sweep
from mmlbench.cli.settings import SETTINGS, setting_parameters, split_command_line
from mmlbench.console import OutputFormat, out

NAME = "train"
NO_ARGS_IS_HELP = True


def _train(
    settings: dict[str, Any],
    *,
    seeds: Annotated[int | None, typer.Option(help="Run N seeds from the base seed: --seed, else the experiment file's seed, else the default; base, base + 1, ...")] = None,
    config: Annotated[Path | None, typer.Option(help="Experiment file (TOML): settings, grid, per-loss parameters.")] = None,
    preset: Annotated[str | None, typer.Option(help="A packaged experiment file, see --list-presets.")] = None,
    quick: QuickOption = False,
    list_presets: Annotated[bool, typer.Option("--list-presets", help="List the packaged presets and exit.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the runs a sweep would do, then exit.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-run configs that already completed (from scratch).")] = False,
    no_resume: Annotated[bool, typer.Option("--no-resume", help="Start interrupted runs over instead of resuming them.")] = False,
    checkpoint_every: Annotated[float, typer.Option(metavar="SECONDS", help="Write a run's resume checkpoint after an epoch at most every SECONDS (0: every epoch), and whenever it stops short of completion.")] = 60.0,
    jobs: Annotated[int, typer.Option(help="Runs at once (worker processes; for one GPU). --backend local.", min=1)] = 1,
    backend: Annotated[str, typer.Option(help=api.backend_help())] = "local",
    address: AddressOption = None,
    gpus_per_run: Annotated[float | None, typer.Option(help="--backend ray: GPUs per run, a fraction packs runs on a GPU [default: 1 where the cluster has GPUs and --device is not cpu, else 0].", min=0, show_default=False)] = None,
    cpus_per_run: Annotated[float | None, typer.Option(help="--backend ray: CPUs per run [default: 1].", min=0, show_default=False)] = None,
    ship_results: Annotated[bool, typer.Option("--ship-results", help="--backend ray: workers send the run folders back and this process writes them (no shared --results-dir).")] = False,
    connect_timeout: ConnectTimeoutOption = None,
    device: DeviceOption = "auto",
    eval_batch_users: EvalBatchUsersOption = None,
    no_cuda_graphs: NoCudaGraphsOption = False,
    no_fetch: NoFetchOption = False,
    source: SourceOption = None,
    data_dir: DataDirOption = None,
    results_dir: Annotated[Path | None, typer.Option(help="Run store [default: $MMLBENCH_RESULTS_DIR or ./results].")] = None,
    quiet: QuietOption = False,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="table, or for scripts json (one document) or csv (one row per run) on stdout.")] = OutputFormat.table,
) -> None:
    """The sweep: `settings` holds the RunConfig-field options by field name (None: not given)."""
    device, backend = device.lower(), backend.lower()  # choices are case-insensitive, as everywhere
    if list_presets:
        for name, path in api.presets():
            out.print(f"{name}\t{path}", highlight=False)
        return
    fixed, grid = split_command_line(settings)
    runs = api.Runs(fixed, grid, config=config, preset=preset, quick=quick, seeds=seeds)
    options = api.TrainOptions(
        device=device, data_dir=data_dir, results_dir=results_dir, quiet=quiet, force=force, resume=not no_resume,
        checkpoint_every=checkpoint_every, eval_batch_users=eval_batch_users, cuda_graphs=not no_cuda_graphs,
    )
    spread = api.BackendOptions(jobs, address, gpus_per_run, cpus_per_run, ship_results, connect_timeout=connect_timeout)
    how = {"backend": backend, "spread": spread, "fetch": not no_fetch, "source": source}
    if dry_run:
        report_plan(api.plan(runs, options, **how), output_format)
    else:
        report_sweep(api.train(runs, options, **how), output_format)


def command(**options: Any) -> None:
    """Train one run or a sweep of runs (lists, --seeds, --config or --preset)."""
    settings = {f.name: options.pop(f.name) for f in SETTINGS}
    _train(settings, **options)


# One option per RunConfig field, then the options of the sweep itself.
command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [*setting_parameters(), *list(inspect.signature(_train, eval_str=True).parameters.values())[1:]]
)

