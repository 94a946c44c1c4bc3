"""Resume checkpoints of runs trained in lockstep, in the format of a run alone (runs.resume).

A run in a group keeps its Adam state in `member.moments` (exp_avg per table, then
exp_avg_sq per table: views into the group's stacks) and `member.steps`, and its random
stream in `member.generator`, not in its trainer's optimizer and the device's default
generator as alone. Its checkpoint writes them where alone has them: the optimizer's state
dict as `torch.optim.Adam.state_dict()` of its trainer's optimizer, and the generator's
state as the device's. So a run interrupted in a group resumes alone, and the other way
round, bit-identically on the CPU (tests/test_lockstep_resume.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmlbench.engine.member import Member
from mmlbench.engine.trainer import FitResult
from mmlbench.runs import resume


def save(resume_folder: Path, member: Member, fit: FitResult, config_hash: str) -> None:
    """Write the member's state after the epoch just closed, now, as `resume.save` writes the run alone's."""
    resume.write(resume_folder, capture(member, fit, config_hash, snapshot=False))


def capture(member: Member, fit: FitResult, config_hash: str, *, snapshot: bool = True) -> dict[str, Any]:
    """The member's state after the epoch just closed, as `resume.capture` takes the run alone's.

    Its tables and moments are views into the group's stacks: copied either way (`snapshot`
    or `resume._owned`), so a member's snapshot holds its own slices, never the group's.
    """
    return resume.capture(
        member.trainer, fit, config_hash, optimizer=_adam_state(member), rng=_rng_states(member), snapshot=snapshot
    )


def load(resume_folder: Path, member: Member, config_hash: str) -> int:
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
