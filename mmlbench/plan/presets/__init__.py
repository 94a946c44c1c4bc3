"""The packaged experiment files, one per preset (`train --preset NAME`, `compare --preset NAME`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mmlbench.errors import unknown_name


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


def preset_path(name: str) -> Path:
    """The packaged experiment file of a preset (copy it to make your own)."""
    if name not in preset_names():
        raise unknown_name("preset", name, preset_names())
    return Path(str(resources.files(__name__) / f"{name}.toml"))
