"""The options that `train`, `tune` and `evaluate` share, declared once so that their names, help and checks stay alike."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmlbench.data.download import MIRROR_ENV

QuickOption = Annotated[bool, typer.Option("--quick", help="The experiment's CPU-sized [quick] variant.")]
AddressOption = Annotated[str | None, typer.Option(
    help="--backend ray: the cluster to join, auto or HOST:PORT [default: start a local Ray instance].", show_default=False)]
ConnectTimeoutOption = Annotated[float | None, typer.Option(
    metavar="SECONDS", help="--backend ray --address: how long to wait for the cluster to answer [default: 30].", show_default=False)]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
EvalBatchUsersOption = Annotated[int | None, typer.Option(help="Users per evaluation batch [default: from memory].", min=1)]
NoCudaGraphsOption = Annotated[bool, typer.Option("--no-cuda-graphs", help="Train eagerly on CUDA (no graph capture).")]
NoFetchOption = Annotated[bool, typer.Option("--no-fetch", help="Never download or preprocess a registered dataset that is missing.")]
SourceOption = Annotated[str | None, typer.Option(
    help=f"Where a missing registered dataset is fetched from, as for `download --source` [default: ${MIRROR_ENV}, else the registry URLs].",
    show_default=False)]
DataDirOption = Annotated[Path | None, typer.Option(help="Data home [default: $MMLBENCH_DATA_DIR or ./datasets].")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
