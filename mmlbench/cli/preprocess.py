"""`mmlbench preprocess`: raw files (or any CSV/TSV/Parquet) into the processed Parquet format."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

from mmlbench.console import info, out, warn
from mmlbench.data import registry
from mmlbench.errors import MMLBenchError, unknown_name

if TYPE_CHECKING:
    from mmlbench.data.preprocess import PreprocessResult

NAME = "preprocess"
NO_ARGS_IS_HELP = True

_GENERIC = "Your own data (--input)"
_SPLITS = "Validation split"


def command(
    dataset: Annotated[
        Optional[str],
        typer.Argument(
            metavar="NAME",
            help=f"Registered dataset or slice: {', '.join(registry.registered_names())}. Reads <data-dir>/NAME/raw/ (a slice: its dataset's).",
            show_default=False,
        ),
    ] = None,
    input_file: Annotated[
        Optional[Path],
        typer.Option("--input", help="CSV, TSV or Parquet file of interactions.", rich_help_panel=_GENERIC),
    ] = None,
    name: Annotated[
        Optional[str],
        typer.Option(
            "--name",
            help="Dataset name for --input; with a registered NAME, the name its output is written under (e.g. a --sample-users slice).",
        ),
    ] = None,
    user_col: Annotated[Optional[str], typer.Option(help="User id column.", rich_help_panel=_GENERIC)] = None,
    item_col: Annotated[Optional[str], typer.Option(help="Item id column.", rich_help_panel=_GENERIC)] = None,
    rating_col: Annotated[
        Optional[str], typer.Option(help="Rating column (for --min-rating).", rich_help_panel=_GENERIC)
    ] = None,
    min_rating: Annotated[
        Optional[float], typer.Option(help="Keep rows with rating >= this.", rich_help_panel=_GENERIC)
    ] = None,
    time_col: Annotated[
        Optional[str],
        typer.Option(
            help="Time column (numbers or dates): orders temporal and leave-one-out splits.",
            rich_help_panel=_GENERIC,
        ),
    ] = None,
    min_user_interactions: Annotated[
        int, typer.Option(help="k-core: minimum interactions per user.", rich_help_panel=_GENERIC)
    ] = 1,
    min_item_interactions: Annotated[
        int, typer.Option(help="k-core: minimum interactions per item.", rich_help_panel=_GENERIC)
    ] = 1,
    split: Annotated[
        Optional[str],
        typer.Option(
            help="Test split per user: random:F, temporal:F or leave-one-out.", rich_help_panel=_GENERIC
        ),
    ] = None,
    valid_fraction: Annotated[
        Optional[float],
        typer.Option(
            help="Move this fraction of each user's train rows to 'valid' (default: none).",
            rich_help_panel=_SPLITS,
        ),
    ] = None,
    sample_users: Annotated[
        Optional[float],
        typer.Option(
            help="Keep this fraction of the users (drawn with --seed), with all their rows: a slice of a real dataset for a laptop.",
            rich_help_panel=_SPLITS,
        ),
    ] = None,
    # 0 is mmlbench.data.preprocess.DEFAULT_SEED, not imported here to keep `--help` free of pandas.
    seed: Annotated[int, typer.Option(help="Seed for every random split.", min=0, rich_help_panel=_SPLITS)] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild, replacing a version built from other inputs or options.")
    ] = False,
    trust_raw: Annotated[
        bool,
        typer.Option(
            "--trust-raw", help="Use registered raw files whose size or sha256 differs from the registry."
        ),
    ] = False,
    data_dir: Annotated[
        Optional[Path],
        typer.Option(help="Data home (default: $MMLBENCH_DATA_DIR, else ./datasets).", show_default=False),
    ] = None,
) -> None:
    """Turn raw files (or your own CSV/TSV/Parquet) into the processed Parquet format."""
    from mmlbench.data.generic import GenericOptions
    from mmlbench.data.preprocess import preprocess_dataset, preprocess_file, preprocess_slice
    from mmlbench.data.splits import parse_split

    common: dict[str, Any] = {"valid_fraction": valid_fraction, "sample_users": sample_users, "seed": seed, "force": force}
    if input_file is None:
        generic_flags = {
            "--user-col": user_col, "--item-col": item_col, "--rating-col": rating_col,
            "--min-rating": min_rating, "--time-col": time_col, "--split": split,
            "--min-user-interactions": None if min_user_interactions == 1 else min_user_interactions,
            "--min-item-interactions": None if min_item_interactions == 1 else min_item_interactions,
        }  # fmt: skip
        _check_registered_use(dataset, [flag for flag, value in generic_flags.items() if value is not None])
        if dataset in registry.SLICES:
            _check_slice_use(dataset, {"--name": name, "--valid-fraction": valid_fraction, "--sample-users": sample_users})
            result = preprocess_slice(dataset, data_dir, force=force, trust_raw=trust_raw)
        else:
            result = preprocess_dataset(dataset, data_dir, trust_raw=trust_raw, output_name=name, **common)
    else:
        required = {"--name": name, "--user-col": user_col, "--item-col": item_col, "--split": split}
        _check_generic_use(dataset, required, trust_raw)
        options = GenericOptions(
            user_col=user_col,
            item_col=item_col,
            split=parse_split(split),
            rating_col=rating_col,
            min_rating=min_rating,
            time_col=time_col,
            min_user_interactions=min_user_interactions,
            min_item_interactions=min_item_interactions,
        )
        result = preprocess_file(input_file, name, options, data_dir, **common)
    _report(result)


def _check_registered_use(dataset: str | None, generic_flags_given: list[str]) -> None:
    if dataset is None:
        raise MMLBenchError("give a registered dataset NAME or --input FILE (see --help)")
    if dataset not in registry.registered_names():  # looked up now: tests register their own
        raise MMLBenchError(
            f"{unknown_name('dataset', dataset, registry.registered_names())} Your own data: "
            f"`mmlbench preprocess --input FILE --name {dataset} --user-col U --item-col I --split leave-one-out`"
        )
    if generic_flags_given:
        flags = ", ".join(generic_flags_given)
        raise MMLBenchError(f"{flags}: only for --input FILE, not for a registered dataset")


def _check_slice_use(dataset: str, options: dict[str, Any]) -> None:
    given = [flag for flag, value in options.items() if value is not None]
    if given:
        raise MMLBenchError(
            f"{', '.join(given)}: '{dataset}' is a registered slice ({registry.SLICES[dataset].describe()}) "
            f"with its options fixed; for another slice use `mmlbench preprocess {registry.SLICES[dataset].source} "
            "--sample-users F --seed S --name NAME`"
        )


def _check_generic_use(dataset: str | None, required: dict[str, str | None], trust_raw: bool) -> None:
    if dataset is not None:
        raise MMLBenchError(
            f"give either NAME ('{dataset}') or --input FILE, not both (name your data with --name)"
        )
    if trust_raw:
        raise MMLBenchError("--trust-raw: only for a registered dataset NAME, not for --input FILE")
    missing = [flag for flag, value in required.items() if value is None]
    if missing:
        raise MMLBenchError(f"--input needs {', '.join(missing)}")


def _report(result: PreprocessResult) -> None:
    for note in result.notes:
        info(note)
    for message in result.warnings:
        warn(message)
    meta = result.meta
    status = "up to date" if result.up_to_date else "written"
    if result.up_to_date:
        info(f"{result.name}: up to date (use --force to rebuild)")
    title = f"{result.name} ({meta['source']}): {status}"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("users", f"{meta['n_users']:,}")
    table.add_row("items", f"{meta['n_items']:,}")
    for split_name, count in meta["interactions"].items():
        table.add_row(f"{split_name} interactions", f"{count:,}")
    table.add_row("density", f"{meta['density']:.6f}")
    table.add_row("output", str(result.path))
    out.print(table)
