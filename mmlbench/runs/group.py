"""A lockstep group end to end: claim its runs, train them together, store each as train_run does.

The single-run path's pieces (single.reuse, run_row, finish_run, store_failure) do the
storing, so a run trained in a group leaves the same run folder (row, curve, per-user
metrics, checkpoint) as alone, its row saying `execution = lockstep` and the group's size.

Resume checkpoints as alone: each run writes one on its own clock (`--checkpoint-every`,
runs.resume.Checkpoints), in the format of a run alone (below), and a run
with one (unless --force or --no-resume) starts in its group from it; runs resumed from
different epochs train together, each counting its own. A run whose checkpoint cannot be used
(resume.DamagedCheckpoint) is left out of the group, untrained, and the others train. An interrupted or failed run first
writes its last epoch's state if not yet written, then is stored as such with its best
weights so far, and keeps its checkpoint; a completed run's is removed once its folder is
written (finish_run).

A run in a group keeps its Adam state in `member.moments` (exp_avg per table, then
exp_avg_sq per table: views into the group's stacks) and `member.steps`, and its random
stream in `member.generator`, not in its trainer's optimizer and the device's default
generator as alone. Its checkpoint writes them where alone has them: the optimizer's state
dict as `torch.optim.Adam.state_dict()` of its trainer's optimizer, and the generator's
state as the device's. So a run interrupted in a group resumes alone, and the other way
round, bit-identically on the CPU (tests/test_lockstep_resume.py).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.console import warn
from mmlbench.data.dataset import InteractionData
from mmlbench.engine.device import matmul_precision, reset_peak_memory
from mmlbench.engine.group_step import GroupStep
from mmlbench.engine.lockstep import continued_generator, fit_group
from mmlbench.engine.member import Member
from mmlbench.engine.trainer import FitResult, Trainer
from mmlbench.runs import build, resume
from mmlbench.runs.options import RunOutcome, TrainOptions
from mmlbench.runs.preflight import check_against_data, prepare
from mmlbench.runs.progress import TrainingProgress
from mmlbench.runs.single import finish_run, now, reuse, run_row, store_failure, train_claimed
from mmlbench.store import claims, ids
from mmlbench.store.ids import claimed_run

Outcome = RunOutcome | BaseException  # the stored run, or what kept it from being trained or stored


def train_group(configs: list[RunConfig], options: TrainOptions) -> list[Outcome]:
    """Train `configs` (one `build.group_key`) together; per config its outcome or exception.

    Completed runs are reused (unless --force) and every other run is claimed before any
    trains: one claimed elsewhere comes back as claims.ClaimedElsewhere and the rest train
    without it. A group left with one run trains it alone. Exceptions that every run would
    meet (store.StoreUnwritable, KeyboardInterrupt outside the fit) are raised.
    """
    resolved = [config.resolved() for config in configs]
    _, device, data = prepare(resolved[0], options)
    for config in resolved[1:]:
        check_against_data(config, data)
    results_dir = options.results_dir
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
        lambda fit, snapshot: capture_member(member, fit, config_hash, snapshot=snapshot),
    )
    member = make_member(
        config, data, device, eval_batch_users=options.eval_batch_users, on_epoch=progress.epoch_done,
        on_checkpoint=saving.epoch_closed,
    )
    checkpoints[id(member)] = saving
    resumed_from = load_member(resume_folder, member, config_hash)  # after seeding and building: overrides both
    resume.announce(run_id, resumed_from, quiet=options.quiet)
    progress.start(member.trainer.batches_per_epoch, first_epoch=resumed_from + 1)
    return member


def save_member(resume_folder: Path, member: Member, fit: FitResult, config_hash: str) -> None:
    """Write the member's state after the epoch just closed, now, as `resume.save` writes the run alone's."""
    resume.write(resume_folder, capture_member(member, fit, config_hash, snapshot=False))


def capture_member(member: Member, fit: FitResult, config_hash: str, *, snapshot: bool = True) -> dict[str, Any]:
    """The member's state after the epoch just closed, as `resume.capture` takes the run alone's.

    Its tables and moments are views into the group's stacks: copied either way (`snapshot`
    or `resume._owned`), so a member's snapshot holds its own slices, never the group's.
    """
    return resume.capture(
        member.trainer, fit, config_hash, optimizer=_adam_state(member), rng=_rng_states(member), snapshot=snapshot
    )


def load_member(resume_folder: Path, member: Member, config_hash: str) -> int:
    """Put a member not yet grouped back in its saved state; the epochs it resumes after (0: none)."""
    state = resume.read(resume_folder, member.trainer.device, config_hash)
    if state is None:
        return 0
    with resume.applying(resume_folder):  # resume.DamagedCheckpoint: the member is not trained
        member.result = resume.restore(state, member.trainer)  # weights, and Adam with the lr into its trainer's optimizer
        _take_adam_state(member)
        _set_rng_states(member, state["rng"])
    return len(member.result.epochs)


def _adam_state(member: Member) -> dict[str, Any]:
    """Its Adam state as its run alone's optimizer state dict, indexed in its trainer's parameter order.

    Its trainer's own optimizer, unused in the group, gives the param groups (the run's current lr).
    """
    state = {
        index: {"step": member.steps[t], "exp_avg": member.moments[t], "exp_avg_sq": member.moments[2 + t]}
        for index, t in enumerate(_table_of_params(member))
    }
    return {"state": state, "param_groups": member.trainer.step.optimizer.state_dict()["param_groups"]}


def _take_adam_state(member: Member) -> None:
    """Adam's moments and steps out of its trainer's optimizer (which keeps no copy), for the group to stack."""
    optimizer = member.trainer.step.optimizer
    per_table = [optimizer.state.pop(table) for table in member.tables]  # its state is keyed by parameter
    member.moments = [s["exp_avg"] for s in per_table] + [s["exp_avg_sq"] for s in per_table]
    member.steps = [s["step"] for s in per_table]


def _table_of_params(member: Member) -> list[int]:
    """For each parameter of its trainer's optimizer, in order, which of its tables it is."""
    tables = member.tables
    return [next(t for t, table in enumerate(tables) if table is param) for param in member.trainer.step.params]


def _rng_states(member: Member) -> dict[str, Tensor]:
    """Its generator's state where the run alone has the device's default generator's."""
    if member.generator.device.type == "cuda":  # nothing in training draws from the CPU generator there
        return {"cpu": torch.get_rng_state(), "cuda": member.generator.get_state()}
    return {"cpu": member.generator.get_state()}


def _set_rng_states(member: Member, states: dict[str, Tensor]) -> None:
    device_type = member.generator.device.type
    if device_type in states:  # else saved on another device (resume.read warned): the stream as seeded
        member.generator.set_state(states[device_type].cpu())
