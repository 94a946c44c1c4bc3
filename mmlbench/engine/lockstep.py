"""Several runs trained in lockstep: their tables stacked, one batched step for all of them.

Why: on a GPU one MF step is a few hundred microseconds of small kernels, so runs of a
sweep leave it mostly idle, and running them side by side in processes shares it badly.
Runs of the same shapes (`runs.build.group_key`) can share every kernel instead: the user and item
tables of K runs are stacked into [K, U, d] and [K, I, d], each run gathers its rows
through offsets into the flattened tables, and one forward, one backward and one Adam
call per learning rate serve them all (on CUDA, one graph replay).

What may differ between the runs of a group: the loss and its parameters, seed, lr, l2,
dropout, gradient clipping, init_std, and everything of the fit (epochs, patience,
plateau decay, monitor, cut-offs): each run keeps its own Trainer for evaluation, early
stopping, lr decay and best-weights reload, which act on its slice of the stack through
its own MF module (whose parameters are views of the stack while it is in the group).
A run that finishes leaves: its weights are copied out, the others restacked.

Exactness: alone, a run draws its permutation per epoch and its negatives and dropout mask
per step from the device's default generator, seeded with its seed before its model is
built. In the group each run has a torch.Generator continuing from that same state (`continued_generator`) and
draws the same shapes in the same order, so it draws the same numbers; the batched step
(engine.group_step.GroupStep) keeps each run's arithmetic, so on the CPU a run in a group is
bit-identical to the run alone (tests/test_lockstep.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from mmlbench.engine.device import synchronize
from mmlbench.engine.group_step import GroupStep
from mmlbench.engine.member import Member
from mmlbench.engine.trainer import EpochLog, check_finite
from mmlbench.errors import MMLBenchError

# What the runs of a group share (runs.build.group_key adds the sampler and its parameters).
SHARED = ("dataset", "model", "batch_size", "negatives", "embedding_dim", "score", "l2_scope", "last_batch", "precision")


def continued_generator(device: torch.device) -> torch.Generator:
    """A generator of its own for a run about to join a group, at the state of the device's
    default one: where the run alone, seeded and built, would draw next."""
    if device.type == "cuda":
        default = torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    else:
        default = torch.default_generator
    generator = torch.Generator(device)
    generator.set_state(default.get_state())
    return generator


def fit_group(members: list[Member], step: GroupStep, on_leave: Callable[[Member], None]) -> None:
    """Train the members together until each has finished; `on_leave` stores each as it leaves.

    Each member counts its own epochs (`member.result`, resumed or fresh). One resumed after
    its last epoch leaves before any training: only its test evaluation is left, as alone.
    A member whose loss diverges leaves with its `error`, the others go on. Ctrl-C ends the
    fit of every member still training (interrupted, with its best weights so far).
    """
    active = list(members)
    leaving = [m for m in active if m.trainer.finished(m.result)]
    while active:
        if not leaving:
            leaving = _group_epoch(active, step)
        active = [m for m in active if m not in leaving]
        step.release(leaving)
        if active and leaving:
            step.regroup(active)
        for member in leaving:
            on_leave(member)
        leaving = []


def _group_epoch(active: list[Member], step: GroupStep) -> list[Member]:
    """One epoch of the group, closed for each member (evaluation, checkpoint, ...): the members that leave."""
    leaving: list[Member] = []
    try:
        started = time.perf_counter()
        means = step.run_epoch()
        synchronize(step.device)
        share = (time.perf_counter() - started) / len(active)  # each run's share of the group's epoch
        for member, (loss, violations) in zip(active, means):
            epoch = len(member.result.epochs) + 1
            try:
                check_finite(loss, epoch)
            except MMLBenchError as exc:
                member.error = exc
            else:
                member.trainer.close_epoch(EpochLog(epoch, loss, violations, share, member.trainer.step.lr), member.result)
            if member.error is not None or member.trainer.finished(member.result):
                leaving.append(member)
    except KeyboardInterrupt:
        for member in active:
            member.result.interrupted = True
        leaving = active
    return leaving
