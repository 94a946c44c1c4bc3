"""The tuner's overhead per trial: a trial of `tune` against a plain training of the same settings.

    OMP_NUM_THREADS=1 python benchmarks/tune_overhead.py --dataset gowalla-u10 --data-dir datasets \\
        --loss ccl --negatives 10 --epochs 3 --trials 4 --work /tmp/tune-overhead

A trial is timed from before its ask to after its tell (`plan.tuning.trial.run_trial`: the
journal lock, TPE's proposal, one report and pruner verdict per epoch, the run written, the tell),
with the pruner off so every trial trains all its epochs. The plain training is
`runs.single.train_run` of each trial's own settings with its test evaluation left out, as a
trial's is, into a fresh store: what `train` does for that config, without the tuner. The order is
tune, plain, plain, tune, tune, plain, ... (`--repeats` rounds; each tune in a fresh store proposes
the same trials: the sampler is seeded), and each side's timings are averaged, so a machine that
speeds up or slows down weighs on both. The tuner's own calls (ask, report and the pruner's verdict each epoch,
the trial's attributes, tell) are also timed alone: on a shared machine the difference of two trainings is noisy,
their sum is not. Prints one JSON line per trial and a summary line: the overhead in seconds and
in % of the plain training (the goal: under 5%).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import optuna

from mmlbench import api, store
from mmlbench.config import RunConfig
from mmlbench.plan.tuning import loop
from mmlbench.plan.tuning.study import CellStudy
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.single import train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gowalla-u10")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--loss", default="ccl")
    parser.add_argument("--negatives", default="10")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="Tune-then-plain rounds, averaged.")
    parser.add_argument("--work", type=Path, required=True, help="A scratch folder (emptied first).")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    _warm_up(args)
    tuned, plain, calls = [], [], []
    for repeat in range(args.repeats):
        if repeat % 2:  # every other round plain first: tune, plain, plain, tune, tune, plain, ...
            plain.append(_plain(args, args.work / "tune-0", args.work / f"plain-{repeat}"))
        with _tuner_calls() as spent:
            tuned.append(_tune(args, args.work / f"tune-{repeat}"))
        calls.append(sum(spent) / len(tuned[-1]))
        if not repeat % 2:
            plain.append(_plain(args, args.work / "tune-0", args.work / f"plain-{repeat}"))
    assert all(t.keys() == tuned[0].keys() for t in tuned), "a later tune proposed other trials"
    rows = []
    for number in sorted(tuned[0]):
        trial = statistics.fmean(t[number] for t in tuned)
        alone = statistics.fmean(p[number] for p in plain)
        rows.append({"trial": number, "tune_s": round(trial, 3), "plain_s": round(alone, 3),
                     "overhead_s": round(trial - alone, 3), "overhead_pct": round(100 * (trial - alone) / alone, 2)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    total_tune, total_plain = sum(r["tune_s"] for r in rows), sum(r["plain_s"] for r in rows)
    print(json.dumps({
        "summary": f"{args.dataset} {args.loss} n{args.negatives}, {args.trials} trials x {args.epochs} epochs",
        "median_overhead_s": statistics.median(r["overhead_s"] for r in rows),
        "median_overhead_pct": statistics.median(r["overhead_pct"] for r in rows),
        "total_overhead_pct": round(100 * (total_tune - total_plain) / total_plain, 2),
        "tuner_calls_s_per_trial": round(statistics.fmean(calls), 4),
        "tuner_calls_pct": round(100 * statistics.fmean(calls) / statistics.fmean(r["plain_s"] for r in rows), 2),
    }), flush=True)


@contextlib.contextmanager
def _tuner_calls() -> Iterator[list[float]]:
    """The seconds spent in the tuner's own calls while the block runs."""
    spent: list[float] = []
    targets = [
        (CellStudy, "ask"), (optuna.trial.Trial, "report"), (optuna.trial.Trial, "should_prune"),
        (optuna.trial.Trial, "set_user_attr"), (optuna.Study, "tell"),
    ]  # fmt: skip
    originals = [(owner, name, getattr(owner, name)) for owner, name in targets]

    def timed(function):  # noqa: ANN001, ANN202
        def call(*positional, **keywords):  # noqa: ANN002, ANN003
            started = time.perf_counter()
            try:
                return function(*positional, **keywords)
            finally:
                spent.append(time.perf_counter() - started)

        return call

    for owner, name, function in originals:
        setattr(owner, name, timed(function))
    try:
        yield spent
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)


def _tune(args: argparse.Namespace, results: Path) -> dict[tuple, float]:
    """Each trial's wall seconds, keyed by its settings (the trial's run id)."""
    seconds: dict[tuple, float] = {}
    real = loop.run_trial

    def timed(*positional, **keywords):  # noqa: ANN002, ANN003 - run_trial's own
        started = time.perf_counter()
        outcome = real(*positional, **keywords)
        if outcome is not None:
            seconds[outcome.run_id] = time.perf_counter() - started
        return outcome

    loop.run_trial = timed
    try:
        runs = api.Runs({"dataset": args.dataset, "loss": args.loss, "negatives": _negatives(args.negatives), "epochs": args.epochs})
        options = TrainOptions(device=args.device, data_dir=args.data_dir, results_dir=results, quiet=True)
        api.tune(runs, options, api.TuneRequest(trials=args.trials, seeds=1, pruner="none"))
    finally:
        loop.run_trial = real
    return seconds


def _plain(args: argparse.Namespace, tuned: Path, results: Path) -> dict[tuple, float]:
    """train_run of every trial's settings (read back from its run row), validation only, in a fresh store."""
    seconds = {}
    for run_dir, row in store.readable_runs(tuned):
        if row.get("selection") not in ("trial", "tuned"):
            continue
        config = RunConfig.from_row(row)
        options = TrainOptions(device=args.device, data_dir=args.data_dir, results_dir=results, quiet=True)
        started = time.perf_counter()
        train_run(config, options, test=False)
        seconds[run_dir.name] = time.perf_counter() - started
    return seconds


def _warm_up(args: argparse.Namespace) -> None:
    """A one-epoch tune first: the process's one-off costs (torch's optimiser machinery, matplotlib) paid before any timing."""
    runs = api.Runs({"dataset": args.dataset, "loss": args.loss, "negatives": _negatives(args.negatives), "epochs": 1})
    options = TrainOptions(device=args.device, data_dir=args.data_dir, results_dir=args.work / "warm-up", quiet=True)
    api.tune(runs, options, api.TuneRequest(trials=1, seeds=1, pruner="none"))


def _negatives(text: str) -> int | str:
    return text if text == "all" else int(text)


if __name__ == "__main__":
    main()
