"""Time the engine on a processed dataset: training epochs and full-ranking evaluations.

    python benchmarks/bench_engine.py --dataset gowalla --loss ccl --negatives 100 \
        --batch-size 512 --device cpu --epochs 1 --evals 2

Prints one JSON line per measurement and a summary line; `--profile-steps N` adds a
torch.profiler table of N training steps (CUDA kernels included on a GPU). This is the
measurement behind the figures in the README; tests never assert on time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from mmlbench.config import RunConfig
from mmlbench.engine.device import device_name, matmul_precision, peak_memory_bytes, reset_peak_memory, synchronize
from mmlbench.engine.trainer import Trainer
from mmlbench.runs import build
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.preflight import prepare


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gowalla")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--model", default="mf")
    parser.add_argument("--loss", default="ccl")
    parser.add_argument("--negatives", type=lambda text: text if text == "all" else int(text), default=100, help="a count, or all")
    parser.add_argument("--sampler", default="uniform")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=1, help="timed training epochs")
    parser.add_argument("--evals", type=int, default=2, help="timed full-ranking evaluations")
    parser.add_argument("--no-cuda-graphs", action="store_true")
    parser.add_argument("--precision", default="fp32", help="fp32 or tf32 (CUDA): the run's --precision")
    parser.add_argument("--profile-steps", type=int, default=0)
    parser.add_argument("--time-steps", type=int, default=0, help="median and minimum seconds of N single steps (after 2)")
    parser.add_argument("--json", type=Path, help="append the summary as a JSON line to this file")
    return parser


def main() -> None:
    args = build_parser().parse_args()

    config = RunConfig(
        args.dataset, model=args.model, loss=args.loss, negatives=args.negatives,
        sampler=args.sampler, batch_size=args.batch_size, precision=args.precision,
    )
    config, device, data = prepare(config, TrainOptions(device=args.device, data_dir=args.data_dir))
    with matmul_precision(config.precision):
        _measure(args, config, device, data)


def _measure(args: argparse.Namespace, config: RunConfig, device: torch.device, data: object) -> None:
    torch.manual_seed(config.seed)
    model = build.model(config, data, device)
    trainer = Trainer(config, data, build.parts(config, data, model), device, cuda_graphs=not args.no_cuda_graphs)
    reset_peak_memory(device)

    epoch_seconds, losses = [], []
    for _ in range(args.epochs):
        started = time.perf_counter()
        loss, _ = trainer.step.run_epoch()
        synchronize(device)
        epoch_seconds.append(time.perf_counter() - started)
        losses.append(loss)
        _emit({"measure": "epoch", "seconds": epoch_seconds[-1], "loss": loss})
    eval_seconds = []
    for _ in range(args.evals):
        evaluation = trainer.evaluate("test")
        eval_seconds.append(evaluation.seconds)
        _emit({"measure": "eval", "seconds": evaluation.seconds, "recall@20": evaluation.metrics.get("recall@20")})

    summary = {
        "device": device_name(device),
        "torch": torch.__version__,
        "dataset": args.dataset, "model": args.model, "loss": args.loss,
        "negatives": args.negatives, "sampler": args.sampler, "batch_size": args.batch_size,
        "cuda_graphs": trainer.step.use_graph, "precision": config.precision,
        "batches_per_epoch": trainer.batches_per_epoch,
        "epoch_seconds_median": statistics.median(epoch_seconds) if epoch_seconds else None,
        "eval_seconds_median": statistics.median(eval_seconds) if eval_seconds else None,
        "last_loss": losses[-1] if losses else None,
        "peak_memory_mib": peak_memory_bytes(device) / 2**20,
    }
    _emit({"measure": "summary", **summary})
    if args.json:
        with open(args.json, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(summary) + "\n")
    if args.time_steps:
        _emit({"measure": "steps", **time_steps(trainer.step, device, args.time_steps)})
    if args.profile_steps:
        profile_steps(trainer.step, device, args.profile_steps)


def time_steps(step: object, device: torch.device, steps: int) -> dict:
    """Seconds of single training steps on one fixed batch (the first two, warm-up, not counted)."""
    step.batch_index.copy_(torch.randperm(step.data.train_items.numel(), device=device)[: step.batch_index.numel()])
    seconds = []
    for _ in range(steps + 2):
        started = time.perf_counter()
        step._run_once()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return {"step_seconds_median": statistics.median(seconds[2:]), "step_seconds_min": min(seconds[2:])}


def profile_steps(step: object, device: torch.device, steps: int) -> None:
    """A torch.profiler table on stderr of `steps` training steps of a TrainStep or a lockstep GroupStep."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step._run_once()
        synchronize(device)
    sort = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=25), file=sys.stderr)


def count_step_ops(step: object, device: torch.device, steps: int) -> dict:
    """Operations per training step, from torch.profiler: the ops that launch work (leaf aten ops
    on the CPU, kernels on CUDA), a proxy for a GPU step's kernel count that a CPU can measure."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step._run_once()
        synchronize(device)
    events = prof.events()
    leaf_ops = sum(1 for e in events if e.name.startswith("aten::") and not e.cpu_children and e.device_type.name == "CPU")
    kernels = sum(1 for e in events if e.device_type.name == "CUDA")
    return {"leaf_ops_per_step": leaf_ops / steps, "cuda_kernels_per_step": kernels / steps}


def _emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
