"""Make the registered datasets a command needs available: download, then preprocess, once each.

`train` calls `fetch_missing` before any run starts, so one command goes from a fresh clone to
a result. Only a registered dataset without a processed folder (no meta.json, the same test as
`require_processed`) is fetched, with the defaults of `mmlbench download` and `mmlbench
preprocess`, and so is a registered slice of one (its dataset's raw files, then the slice with
its registered options); any other name is left alone, so its runs keep saying which command
makes it.

Light to import (the CLI imports it to build `train`): the processed format and preprocessing,
which pull in numpy and pandas, are imported when a dataset is checked or fetched.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from rich.filesize import decimal

from mmlbench import console
from mmlbench.data import registry
from mmlbench.data.download import VERIFIED, dataset_status, download_dataset, resolve_source
from mmlbench.errors import MMLBenchError
from mmlbench.paths import data_home, processed_dir


def missing_registered(names: Iterable[str], data_dir: Path | None) -> list[str]:
    """The registered datasets and slices among `names` (each once, in order) that are not preprocessed."""
    from mmlbench.data.processed import META_FILE

    return [
        name
        for name in dict.fromkeys(names)
        if name in registry.registered_names() and not (processed_dir(name, data_dir) / META_FILE).is_file()
    ]


def fetch_missing(
    names: Iterable[str],
    data_dir: Path | None,
    *,
    source: str | None = None,
    fetch: bool = True,
    dry_run: bool = False,
    quiet: bool = False,
) -> list[str]:
    """Download and preprocess the registered datasets among `names` that are not preprocessed.

    Says so on stderr, one line per step. `source` is a mirror URL or local folder, as for
    `mmlbench download --source` (None: $MMLBENCH_MIRROR, else the registry URLs). With
    `dry_run` nothing is written: each dataset gets a "would download" line instead. Returns
    the names fetched (or that would be); `fetch=False` fetches nothing and returns [].
    """
    if not fetch:
        if source is not None:
            raise MMLBenchError("--source names where to fetch data from; it cannot go with --no-fetch")
        return []
    missing = missing_registered(names, data_dir)
    if not missing and source is None:
        return []
    origin = resolve_source(source)  # a bad --source is an error even when nothing is missing
    for name in missing:
        spec = registry.get_dataset(registry.SLICES[name].source if name in registry.SLICES else name)
        where = f"{decimal(spec.size)} from {origin or _registry_host(spec)}"
        if dry_run:
            download, build = ("it", "it") if name == spec.name else (f"{spec.name} if needed", name)
            console.info(f"{name} is not preprocessed in {data_home(data_dir)}: "
                         f"train would download {download} ({where}) and preprocess {build} first")
        else:
            _fetch(name, spec, data_dir, source, where, quiet)
    return missing


def _fetch(
    name: str, spec: registry.DatasetSpec, data_dir: Path | None, source: str | None, where: str, quiet: bool
) -> None:
    """Download `spec`'s raw files unless verified, then preprocess `name` (the dataset, or a slice of it)."""
    from mmlbench.data.preprocess import preprocess_dataset, preprocess_slice

    if dataset_status(spec, data_dir) != VERIFIED:
        console.info(f"{spec.name} is not in {data_home(data_dir)}: downloading it ({where})")
        with console.status(f"{spec.name}: downloading", quiet):
            download_dataset(spec, data_dir, source=source, quiet=True)
    if name in registry.SLICES:
        console.info(f"{name}: preprocessing {registry.SLICES[name].describe()} into {processed_dir(name, data_dir)}")
        result = preprocess_slice(name, data_dir)
    else:
        console.info(f"{name}: preprocessing the raw files (default options) into {processed_dir(name, data_dir)}")
        result = preprocess_dataset(name, data_dir)
    for message in result.warnings:
        console.warn(message)


def _registry_host(spec: registry.DatasetSpec) -> str:
    return urllib.parse.urlsplit(spec.files[0].url).hostname or spec.files[0].url
