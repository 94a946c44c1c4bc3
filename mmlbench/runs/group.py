"""A lockstep group end to end: claim its runs, train them together, store each as train_run does.

The single-run path's pieces (single.reuse, run_row, finish_run, store_failure) do the
storing, so a run trained in a group leaves the same run folder (row, curve, per-user
metrics, checkpoint) as alone, its row saying `execution = lockstep` and the group's size.

Resume checkpoints as alone: each run writes one on its own clock (`--checkpoint-every`,
runs.resume.Checkpoints), in the format of a run alone (runs.group_resume), and a run
with one (unless --force or --no-resume) starts in its group from it; runs resumed from
different epochs train together, each counting its own. A run whose checkpoint cannot be used
(resume.DamagedCheckpoint) is left out of the group, untrained, and the others train. An interrupted or failed run first
writes its last epoch's state if not yet written, then is stored as such with its best
weights so far, and keeps its checkpoint; a completed run's is removed once its folder is
written (finish_run).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.console import warn
from mmlbench.data.dataset import InteractionData
from mmlbench.engine.device import matmul_precision, reset_peak_memory
from mmlbench.engine.group_step import GroupStep
from mmlbench.engine.lockstep import continued_generator, fit_group
from mmlbench.engine.member import Member
from mmlbench.engine.trainer import Trainer
from mmlbench.paths import results_home
from mmlbench.runs import build
from mmlbench.runs import group_resume, resume
from mmlbench.runs.progress import TrainingProgress
from mmlbench.runs.single import (
    RunOutcome, TrainOptions, check_against_data, finish_run, now, prepare, reuse, run_row, store_failure,
    train_claimed,
)
from mmlbench.store import claims, ids
from mmlbench.store.ids import claimed_run

Outcome = RunOutcome | BaseException  # the stored run, or what kept it from being trained or stored


def train_group(configs: list[RunConfig], options: TrainOptions) -> list[Outcome]:
    """Train `configs` (one `lockstep.group_key`) together; per config its outcome or exception.

    Completed runs are reused (unless --force) and every other run is claimed before any
    trains: one claimed elsewhere comes back as claims.ClaimedElsewhere and the rest train
    without it. A group left with one run trains it alone. Exceptions that every run would
    meet (store.StoreUnwritable, KeyboardInterrupt outside the fit) are raised.
    """
    resolved = [config.resolved() for config in configs]
    _, device, data = prepare(resolved[0], options)
    for config in resolved[1:]:
        check_against_data(config, data)
    results_dir = results_home(options.results_dir)
    outcomes: dict[int, Outcome] = {}
    with contextlib.ExitStack() as held:
        todo = []
        for position, config in enumerate(resolved):
            config_hash = config.hash(data.fingerprint)
            done = reuse(results_dir, config_hash, options)
            if done is None:
                try:
                    held.enter_context(claims.claimed(results_dir, config_hash, claimed_run(config, config_hash)))
                except claims.ClaimedElsewhere as exc:
                    outcomes[position] = exc
                    continue
                done = reuse(results_dir, config_hash, options)  # another sweep may have finished it since
            if done is not None:
                outcomes[position] = done
            else:
                todo.append(position)
        if len(todo) == 1:
            outcomes[todo[0]] = train_claimed(resolved[todo[0]], options, device, data, results_dir)
        elif todo:
            trained = _train_together([resolved[p] for p in todo], options, device, data, results_dir)
            outcomes.update(zip(todo, trained))
    return [outcomes[position] for position in range(len(configs))]


def _train_together(
    configs: list[RunConfig], options: TrainOptions, device: torch.device, data: InteractionData, results_dir: Path
) -> list[Outcome]:
    reset_peak_memory(device)
    started_at, started = now(), time.perf_counter()
    checkpoints: dict[int, resume.Checkpoints] = {}  # per member, by id
    members, refused = [], {}
    for position, config in enumerate(configs):
        try:
            members.append(_member(config, options, device, data, results_dir, checkpoints))
        except resume.DamagedCheckpoint as exc:  # not trained: its stored row and checkpoint stay as they were
            refused[position] = exc
    if not members:
        return [refused[position] for position in range(len(configs))]
    rows = {
        id(m): run_row(m.config, data, device, started_at, lockstep_group=len(members)) | {"resumed_from_epoch": len(m.result.epochs)}
        for m in members
    }
    step = GroupStep(members, data, device, use_graph=options.cuda_graphs, warn=warn)
    outcomes: dict[int, Outcome] = {}

    def leave(member: Member) -> None:
        row = rows[id(member)]
        if member.error is not None or member.result.interrupted:
            checkpoints[id(member)].flush()
        if member.error is not None:
            store_failure(results_dir, row, member.error)
            outcomes[id(member)] = member.error
        else:
            outcomes[id(member)] = finish_run(results_dir, row, member.trainer, member.result, started, cuda_graphs=step.use_graph)

    try:
        with matmul_precision(configs[0].precision):  # one group, one precision (lockstep.SHARED)
            fit_group(members, step, leave)
    except store.StoreUnwritable:
        raise
    except KeyboardInterrupt:  # outside the group's epochs (a leaving run's test evaluation): not stored, resumable
        for member in members:
            if id(member) not in outcomes:
                checkpoints[id(member)].flush()
        raise
    except Exception as exc:  # noqa: BLE001 - out of memory, ...: every run still training failed with it
        for member in members:
            if id(member) not in outcomes:
                checkpoints[id(member)].flush()
                store_failure(results_dir, rows[id(member)], exc)
                outcomes[id(member)] = exc
    trained = iter(outcomes[id(member)] for member in members)
    return [refused[position] if position in refused else next(trained) for position in range(len(configs))]


def make_member(config: RunConfig, data: InteractionData, device: torch.device, **trainer_options: object) -> Member:
    """The run as `train_run` starts it (seeded, model built), on a generator of its own."""
    torch.manual_seed(config.seed)
    model = build.model(config, data, device)
    generator = continued_generator(device)  # where the run alone would draw next
    parts = build.parts(config, data, model, generator=generator)
    trainer = Trainer(config, data, parts, device, cuda_graphs=False, warn=warn, **trainer_options)
    return Member(trainer, generator)


def _member(
    config: RunConfig, options: TrainOptions, device: torch.device, data: InteractionData, results_dir: Path,
    checkpoints: dict[int, resume.Checkpoints],
) -> Member:
    """A member, resumed from its checkpoint where it has one, its own `Checkpoints` put in
    `checkpoints`, with its progress lines (one per epoch; several bars at once would interleave)."""
    config_hash = config.hash(data.fingerprint)
    run_id = ids.run_id(config, config_hash)
    resume_folder = ids.resume_folder(results_dir, run_id)
    if options.force or not options.resume:
        resume.discard(resume_folder)
    progress = TrainingProgress(config, quiet=options.quiet)
    saving = resume.Checkpoints(
        resume_folder, options.checkpoint_every,
        lambda fit, snapshot: group_resume.capture(member, fit, config_hash, snapshot=snapshot),
    )
    member = make_member(
        config, data, device, eval_batch_users=options.eval_batch_users, on_epoch=progress.epoch_done,
        on_checkpoint=saving.epoch_closed,
    )
    checkpoints[id(member)] = saving
    resumed_from = group_resume.load(resume_folder, member, config_hash)  # after seeding and building: overrides both
    resume.announce(run_id, resumed_from, quiet=options.quiet)
    progress.start(member.trainer.batches_per_epoch, first_epoch=resumed_from + 1)
    return member
