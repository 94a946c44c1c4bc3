"""Lockstep groups: correctness against runs alone, and the epoch time of a group vs its runs alone.

    python benchmarks/lockstep_bench.py check WORKDIR [--device cuda]
    python benchmarks/lockstep_bench.py time --dataset gowalla --data-dir D --negatives 800 \
        --batch-size 256 --device cuda [--epochs 2] [--seeds 1] [--alone] [--no-cuda-graphs] \
        [--time-steps N] [--count-ops STEPS] [--batched-losses auto|on|off] [--profile-steps STEPS]

`check` trains three planted runs (ccl, mmcl, bpr; different seeds, lr, dropout) alone and in
one group on the device and prints the largest per-epoch and test-metric differences (one
JSON line; exit 1 beyond TOLERANCE). `time` builds the paper-gowalla preset's five losses at
the given negatives (x seeds) as one group and times its epochs (the first includes graph
capture), then, with --alone, one epoch of each run alone. Tests never assert on time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_engine import count_step_ops, profile_steps  # noqa: E402
from synthetic import make_planted  # noqa: E402

from mmlbench import store  # noqa: E402
from mmlbench.config import RunConfig  # noqa: E402
from mmlbench.engine.device import device_name, matmul_precision, peak_memory_bytes, reset_peak_memory, synchronize  # noqa: E402
from mmlbench.engine.group_step import GroupStep  # noqa: E402
from mmlbench.engine.trainer import Trainer  # noqa: E402
from mmlbench.plan.experiment import read_experiment  # noqa: E402
from mmlbench.plan.presets import preset_path  # noqa: E402
from mmlbench.runs import build  # noqa: E402
from mmlbench.runs.group import make_member, train_group  # noqa: E402
from mmlbench.runs.options import TrainOptions  # noqa: E402
from mmlbench.runs.preflight import prepare  # noqa: E402
from mmlbench.runs.single import train_run  # noqa: E402

TOLERANCE = 1e-4  # metrics on ~120 planted users move in steps of ~1e-3: this is float noise only
METRICS = ["loss", "recall@20", "ndcg@20"]


def check(workdir: Path, device: str) -> int:
    make_planted(workdir / "data")
    base = dict(negatives=20, batch_size=64, epochs=6, patience=3)
    configs = [
        RunConfig("planted", loss="ccl", seed=1, lr=0.01, **base),
        RunConfig("planted", loss="mmcl", seed=2, lr=0.02, dropout=0.3, **base),
        RunConfig("planted", loss="bpr", seed=3, lr=0.01, l2=1e-3, **base),
    ]
    worst: dict[str, float] = {}
    for graphs in (True, False):
        options = dict(device=device, data_dir=workdir / "data", quiet=True, cuda_graphs=graphs)
        alone = [train_run(c, TrainOptions(results_dir=workdir / f"alone-{graphs}", **options)) for c in configs]
        group = train_group(configs, TrainOptions(results_dir=workdir / f"group-{graphs}", **options))
        for one, together in zip(alone, group):
            if isinstance(together, BaseException):
                raise together
            a, b = store.read_curve(one.run_dir), store.read_curve(together.run_dir)
            if len(a) != len(b):
                worst[f"epochs graphs={graphs}"] = float("inf")
                continue
            for metric in METRICS:
                key = f"curve {metric} graphs={graphs}"
                worst[key] = max(worst.get(key, 0.0), float((a[metric] - b[metric]).abs().max()))
            key = f"test recall@20 graphs={graphs}"
            worst[key] = max(worst.get(key, 0.0), abs(one.row["recall@20"] - together.row["recall@20"]))
            worst[f"cuda_graphs used graphs={graphs}"] = float(together.row["cuda_graphs"])
    ok = all(v <= TOLERANCE for k, v in worst.items() if not k.startswith("cuda_graphs"))
    print(json.dumps({"check": "lockstep vs alone", "device": device, "ok": ok, "tolerance": TOLERANCE, **worst}))
    return 0 if ok else 1


def time_group(args: argparse.Namespace) -> int:
    experiment = read_experiment(preset_path("paper-gowalla"))
    settings = {
        **experiment.settings, "dataset": args.dataset, "negatives": args.negatives, "batch_size": args.batch_size,
        "precision": args.precision,
    }
    configs = []
    for seed in range(settings["seed"], settings["seed"] + args.seeds):
        for loss in experiment.grid["loss"]:
            configs.append(RunConfig(**{**settings, **experiment.losses.get(loss, {}), "loss": loss, "seed": seed}).resolved())
    options = TrainOptions(device=args.device, data_dir=args.data_dir, cuda_graphs=not args.no_cuda_graphs)
    _, device, data = prepare(configs[0], options)
    members = [make_member(config, data, device) for config in configs]
    batched = {"auto": {}, "on": {"batched_losses": True}, "off": {"batched_losses": False}}[args.batched_losses]
    step = GroupStep(members, data, device, use_graph=not args.no_cuda_graphs, **batched)
    reset_peak_memory(device)
    if args.count_ops or args.time_steps:
        step._run_once()  # warm-up (and capture, with graphs)
    if args.time_steps:
        print(json.dumps({"measure": "group step", "runs": len(members), **_time_steps(step, device, args.time_steps)}))
    if args.count_ops:
        print(json.dumps({"measure": "ops", "runs": len(members), "batched_losses": args.batched_losses, **count_step_ops(step, device, args.count_ops)}))
    seconds = []
    for epoch in range(args.epochs):
        started = time.perf_counter()
        means = step.run_epoch()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
        print(json.dumps({"measure": "group epoch", "epoch": epoch + 1, "seconds": seconds[-1], "losses": [m[0] for m in means]}))
    if args.profile_steps:
        profile_steps(step, device, args.profile_steps)
    if not seconds:
        return 0
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    summary = {
        "device": device_name(device), "runs": len(members), "negatives": args.negatives, "batch_size": args.batch_size,
        "cuda_graphs": step.use_graph, "group_epoch_seconds": steady, "per_run_epoch_seconds": steady / len(members),
        "peak_memory_mib": peak_memory_bytes(device) / 2**20,
    }
    if args.alone:
        alone = []
        for config in configs[: len(experiment.grid["loss"])]:
            torch.manual_seed(config.seed)
            parts = build.parts(config, data, build.model(config, data, device))
            trainer = Trainer(config, data, parts, device, cuda_graphs=not args.no_cuda_graphs)
            trainer.step.run_epoch()  # capture and warm-up
            started = time.perf_counter()
            trainer.step.run_epoch()
            synchronize(device)
            alone.append(time.perf_counter() - started)
            print(json.dumps({"measure": "alone epoch", "loss": config.loss, "seconds": alone[-1]}))
        summary["alone_epoch_seconds_mean"] = statistics.mean(alone)
        summary["speedup_per_run"] = statistics.mean(alone) / summary["per_run_epoch_seconds"]
    print(json.dumps({"measure": "summary", **summary}))
    return 0


def _time_steps(step: GroupStep, device: torch.device, steps: int) -> dict:
    """Median and minimum wall time of single group steps (full batches of random pairs)."""
    step.batch_index.copy_(torch.randint(step.data.train_items.numel(), step.batch_index.shape, device=device))
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        step._run_once()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return {"median_step_ms": 1000 * statistics.median(seconds), "min_step_ms": 1000 * min(seconds)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    checking = sub.add_parser("check")
    checking.add_argument("workdir", type=Path)
    checking.add_argument("--device", default="cuda")
    timing = sub.add_parser("time")
    timing.add_argument("--dataset", default="gowalla")
    timing.add_argument("--data-dir", type=Path)
    timing.add_argument("--negatives", type=int, default=800)
    timing.add_argument("--batch-size", type=int, default=256)
    timing.add_argument("--device", default="auto")
    timing.add_argument("--epochs", type=int, default=2)
    timing.add_argument("--seeds", type=int, default=1)
    timing.add_argument("--alone", action="store_true", help="also time one epoch of each loss alone")
    timing.add_argument("--no-cuda-graphs", action="store_true")
    timing.add_argument("--precision", default="fp32", help="fp32 or tf32 (CUDA): the runs' --precision")
    timing.add_argument("--profile-steps", type=int, default=0, help="a torch.profiler table of N group steps, on stderr")
    timing.add_argument("--time-steps", type=int, default=0, help="time N single group steps (median, min)")
    timing.add_argument("--count-ops", type=int, default=0, help="count the ops (CPU) / kernels (CUDA) of N group steps")
    timing.add_argument("--batched-losses", choices=["auto", "on", "off"], default="auto", help="GroupStep's batched_losses")
    return parser


def main() -> int:
    args = build_parser().parse_args()
    if args.command == "check":
        return check(args.workdir, args.device)
    with matmul_precision(args.precision):
        return time_group(args)


if __name__ == "__main__":
    sys.exit(main())
