"""Time the planted CI grid with --backend local and --backend ray on this machine's CPUs.

    OMP_NUM_THREADS=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled \\
        python benchmarks/ray_overhead.py --work /tmp/ray-overhead --seeds 1,4

The CI benchmark's data and grid (results/baselines: 4 losses x seeds, 15 epochs), each case
a fresh `mmlbench train` process into a fresh results folder, so the Ray cases pay for
starting their local instance and its workers as a user would. Cases: local (one run after
another in the process), ray one at a time (--cpus-per-run = every CPU of the instance, so
runs never overlap: the overhead alone) and ray packed (--cpus-per-run 1).
Prints one JSON line per case and grid size (cells, wall seconds, the runs' own wall seconds
summed from their rows), then, from the two first sizes, Ray's extra seconds per cell (the
slope of ray-one-at-a-time minus local against cells) and its fixed start-up cost.
Set OMP_NUM_THREADS=1 so that every case trains with one thread per run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mmlbench import store

BASELINES = Path(__file__).resolve().parents[1] / "results" / "baselines"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="A scratch folder (emptied first).")
    parser.add_argument("--seeds", default="1,4", help="Grid sizes as seeds per loss (4 x seeds cells), comma list.")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    data = args.work / "data"
    _mmlbench("preprocess", "--input", str(BASELINES / "ci-interactions.csv"), "--name", "ci-planted", "--user-col", "user",
              "--item-col", "item", "--split", "random:0.2", "--seed", "7", "--data-dir", str(data))
    cases = {
        "local": [],
        "ray one at a time": ["--backend", "ray", "--cpus-per-run", str(os.cpu_count() or 1)],
        "ray packed": ["--backend", "ray", "--cpus-per-run", "1"],
    }
    extra = []  # (cells, ray one at a time minus local wall seconds) per grid size
    for seeds in args.seeds.split(","):
        walls = {}
        for case, options in cases.items():
            results = args.work / f"results-{seeds}-{len(walls)}"
            started = time.perf_counter()
            _mmlbench("train", "--config", str(BASELINES / "ci.toml"), "--seeds", seeds, "--data-dir", str(data),
                      "--results-dir", str(results), "--device", "cpu", "-q", *options)
            walls[case] = time.perf_counter() - started
            runs = store.read_runs(results)
            print(json.dumps({
                "case": case, "cells": len(runs), "wall_s": round(walls[case], 2),
                "run_wall_s_sum": round(float(runs["wall_seconds"].sum()), 2),
            }), flush=True)
        extra.append((len(runs), walls["ray one at a time"] - walls["local"]))
    if len(extra) >= 2:
        (cells_a, extra_a), (cells_b, extra_b) = extra[:2]
        per_cell = (extra_b - extra_a) / (cells_b - cells_a)
        print(json.dumps({"ray_extra_s_per_cell": round(per_cell, 2), "ray_fixed_start_s": round(extra_a - per_cell * cells_a, 2)}))


def _mmlbench(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "mmlbench", *args], check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
