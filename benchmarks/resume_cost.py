"""Time one write of a resume checkpoint, and the per-epoch snapshot, at Gowalla's size (no data needed).

    python benchmarks/resume_cost.py --dir /tmp/resume-cost --repeats 10 --epoch-seconds 22
    python benchmarks/resume_cost.py --dir /tmp/resume-cost --repeats 3 --members 5


MF with 29,858 users and 40,981 items at dim 64, Adam's moments filled by one step, 30
epochs of curve. Two cases: the epoch just evaluated is the best (its weights are the
model's, stored once) and an older epoch is the best (its weights stored beside the model's).
Prints one JSON line per case: checkpoint bytes, median and max seconds of one write
(`resume.save`: torch.save + fsync + rename), paid once per `--checkpoint-every` interval
and at a stop, and `snapshot_s`, the median seconds of the copy kept in memory after every
other epoch (`resume.capture`, on the device); `share_of_epoch` is the write's median over
an epoch of `--epoch-seconds`, i.e. its cost were it written every epoch (--checkpoint-every 0).
With `--members K`: a lockstep group of K such runs (tables and Adam moments views into
stacks, as GroupStep leaves them); the seconds are those of all K members' checkpoints
(`runs.group.save_member` / `capture_member`), i.e. what one group epoch pays, and the bytes one member's file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from mmlbench.engine.models import MF
from mmlbench.engine.step import make_adam
from mmlbench.engine.trainer import EpochLog, FitResult
from mmlbench.runs import resume
from mmlbench.store import ids

GOWALLA_USERS, GOWALLA_ITEMS = 29_858, 40_981


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="A results folder to write the checkpoint in.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--epoch-seconds", type=float, default=22.0, help="The epoch time to compare with.")
    parser.add_argument("--members", type=int, default=0, help="K > 0: the checkpoints of a lockstep group of K runs.")
    args = parser.parse_args()
    device = torch.device(args.device)
    trainers = [_trainer(device, args.dim) for _ in range(max(args.members, 1))]
    save, capture = _group_saver(trainers) if args.members else _alone_saver(trainers[0])
    curve = [EpochLog(e, 0.5, 0.1, args.epoch_seconds, 1e-4, 1.0, {"recall@20": 0.1}) for e in range(1, 31)]
    best = {k: v.detach().clone() for k, v in trainers[0].model.state_dict().items()}
    folders = [ids.resume_folder(args.dir, f"gowalla-size-{k}") for k in range(len(trainers))]
    for case, best_epoch in (("best is the last epoch", 30), ("best is an older epoch", 27)):
        fit = FitResult(best, best_epoch, 0.1, curve, stale=0 if best_epoch == 30 else 3)
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            save(folders, fit)
            seconds.append(time.perf_counter() - started)
        median = statistics.median(seconds)
        snapshots = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            capture(fit)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            snapshots.append(time.perf_counter() - started)
        print(json.dumps({
            "case": case, "device": device.type, "members": args.members,
            "bytes": (folders[0] / resume.STATE_FILE).stat().st_size,
            "median_s": round(median, 4), "max_s": round(max(seconds), 4),
            "snapshot_s": round(statistics.median(snapshots), 4),
            "share_of_epoch": round(median / args.epoch_seconds, 5),
        }))
    for folder in folders:
        resume.discard(folder)


def _alone_saver(trainer: SimpleNamespace):
    """Functions saving and capturing the run alone."""

    def save(folders: list, fit: FitResult) -> None:
        resume.save(folders[0], trainer, fit, "hash")

    def capture(fit: FitResult) -> dict:
        return resume.capture(trainer, fit, "hash")
    return save, capture


def _group_saver(trainers: list[SimpleNamespace]):
    """The trainers as members of a group (views into stacked tables and moments): functions saving and capturing them all."""
    from mmlbench.engine.member import Member
    from mmlbench.runs.group import capture_member, save_member

    tables = [list(t.model.embedding_tables()) for t in trainers]
    stacks = [torch.stack([ts[i].detach() for ts in tables]) for i in (0, 1)]
    moments = [torch.stack([t.step.optimizer.state[ts[i]][key] for t, ts in zip(trainers, tables)])
               for key in ("exp_avg", "exp_avg_sq") for i in (0, 1)]
    members = []
    for k, (trainer, own) in enumerate(zip(trainers, tables)):
        for param, stacked in zip(own, stacks):
            param.data = stacked[k]
        steps = [trainer.step.optimizer.state[table]["step"] for table in own]
        trainer.step.optimizer.state.clear()
        members.append(Member(trainer, torch.Generator(trainer.device), moments=[m[k] for m in moments], steps=steps))

    def save(folders: list, fit: FitResult) -> None:
        for member, folder in zip(members, folders):
            save_member(folder, member, fit, "hash")

    def capture(fit: FitResult) -> list:
        return [capture_member(member, fit, "hash") for member in members]
    return save, capture


def _trainer(device: torch.device, dim: int) -> SimpleNamespace:
    """What resume.save reads of a Trainer: the model, its Adam (and its parameters), the device."""
    model = MF(GOWALLA_USERS, GOWALLA_ITEMS, dim, dropout=0.1, init_std=1e-4).to(device)
    params = list(model.parameters())
    optimizer = make_adam(params, 1e-4, device, capturable=device.type == "cuda")
    loss = sum(p.square().sum() for p in params)
    loss.backward()
    optimizer.step()  # creates exp_avg, exp_avg_sq and step
    return SimpleNamespace(model=model, device=device, step=SimpleNamespace(optimizer=optimizer, params=params))


if __name__ == "__main__":
    main()
