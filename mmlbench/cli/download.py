"""`mmlbench download`: fetch and verify registered datasets, or list their local status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.filesize import decimal
from rich.table import Table

from mmlbench import console
from mmlbench.data import registry
from mmlbench.data.download import CORRUPT, MIRROR_ENV, PARTIAL, VERIFIED, dataset_status, download_dataset
from mmlbench.errors import MMLBenchError
from mmlbench.paths import DATA_DIR_ENV, data_home

NAME = "download"
# Bare `mmlbench download` says in one line what is missing, rather than printing help.
NO_ARGS_IS_HELP = False

_STATUS_STYLE = {VERIFIED: "green", PARTIAL: "yellow", CORRUPT: "bold red"}


def command(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME",
            help=f"Datasets to fetch: {', '.join(sorted(registry.DATASETS))}.",
            show_default=False,
        ),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="Show every dataset's size, counts and local status, then exit.")
    ] = False,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help=f"Mirror base URL (files at <url>/<name>/<file>) or local folder (<folder>/<name>/<file>). "
            f"Default: ${MIRROR_ENV}, else the registry URLs.",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help=f"Data home. Default: ${DATA_DIR_ENV}, else ./datasets.", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even files already verified.")] = False,
    # 3 retries with a 0.5 s base wait ride out about 3.5 s of outage per file.
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="Retries per file after a network failure or HTTP 5xx/429.")
    ] = 3,
    retry_delay: Annotated[
        float, typer.Option("--retry-delay", min=0.0, help="Seconds before the first retry; doubles after each.")
    ] = 0.5,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status lines.")] = False,
) -> None:
    """Download and verify datasets (sha256 + size); resumes interrupted downloads."""
    if list_:
        specs = [registry.get_dataset(name) for name in names] if names else list(registry.DATASETS.values())
        console.out.print(_status_table(specs, data_dir))
        return
    if not names:
        valid = ", ".join(sorted(registry.DATASETS))
        raise MMLBenchError(f"name at least one dataset to download ({valid}), or use --list")
    # Check every name before fetching anything, so a typo in the last one costs nothing.
    specs = [registry.get_dataset(name) for name in dict.fromkeys(names)]
    for spec in specs:
        download_dataset(
            spec, data_dir, source=source, force=force, retries=retries, backoff=retry_delay, quiet=quiet
        )


def _status_table(specs: list[registry.DatasetSpec], data_dir: Path | None) -> Table:
    table = Table(title=f"datasets in {data_home(data_dir)}")
    for header in ("name", "size", "users", "items", "train", "test"):
        table.add_column(header, justify="left" if header == "name" else "right")
    table.add_column("status")
    for spec in specs:
        status = dataset_status(spec, data_dir)
        counts = (f"{count:,}" for count in (spec.users, spec.items, spec.train, spec.test))
        style = _STATUS_STYLE.get(status, "dim")
        table.add_row(spec.name, decimal(spec.size), *counts, f"[{style}]{status}[/]")
    return table
