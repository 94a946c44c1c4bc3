"""Where a result came from: code version, libraries, machine."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch

from mmlbench import __version__


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's commit (with '-dirty' for uncommitted changes), or '' outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}-dirty" if dirty else commit


def versions() -> dict[str, str]:
    return {
        "mmlbench_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "host": platform.node(),
    }
