"""The executor contract (plan/executors/base.py), held for every registered backend.

Each entry of the registry, with its default options (local also with --jobs 2), trains the
same small sweep: one entry per config in the order given, the runs stored, a failing run an
entry with its error while the others go on; trained again, completed runs are skipped and a
run claimed by a live process is left alone. A backend added to EXECUTORS is picked up here.
"""

from __future__ import annotations

import pytest

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.plan.executors import EXECUTORS, BackendOptions, get_executor
from mmlbench.plan.executors.base import fingerprint_of
from mmlbench.plan.sweep import CLAIMED, run_sweep
from mmlbench.runs.options import TrainOptions
from mmlbench.store import claims

FAST = {"negatives": 5, "batch_size": 64, "epochs": 2}
# More than one setting for a backend whose options pick another executor class.
SETTINGS = {"local": [BackendOptions(), BackendOptions(jobs=2)]}
CASES = [(name, settings) for name in sorted(EXECUTORS) for settings in SETTINGS.get(name, [BackendOptions()])]


@pytest.fixture(params=CASES, ids=[f"{name}-jobs{settings.jobs}" for name, settings in CASES])
def executor(request):
    name, settings = request.param
    if EXECUTORS[name].extra == "ray":
        request.getfixturevalue("local_ray")  # one local instance for the module; the executor joins it
    return get_executor(name, settings)


def _configs(**change) -> list[RunConfig]:
    return [RunConfig("planted", loss=loss, **{**FAST, **change}).resolved() for loss in ("ccl", "bpr")]


def _options(planted_dir, results) -> TrainOptions:
    return TrainOptions(device="cpu", data_dir=planted_dir, results_dir=results, quiet=True)


def test_every_config_comes_back_in_order_and_a_failure_does_not_stop_the_others(executor, planted_dir, tmp_path):
    impossible = RunConfig("planted", sampler="uniform-exclude-pos", **{**FAST, "negatives": 100}).resolved()  # 60 items
    configs = [*_configs(), impossible]
    entries = run_sweep(configs, _options(planted_dir, tmp_path / "r"), executor=executor)
    assert [entry.config for entry in entries] == configs
    assert [entry.status for entry in entries] == [store.STATUS_COMPLETED, store.STATUS_COMPLETED, store.STATUS_FAILED]
    assert "--negatives 100 is more than" in entries[2].error
    stored = store.read_runs(tmp_path / "r")
    assert sorted(stored["run_id"]) == sorted(entry.outcome.row["run_id"] for entry in entries[:2])
    assert set(stored["status"]) == {store.STATUS_COMPLETED}


def test_completed_runs_are_skipped_and_a_claimed_one_is_left_to_its_holder(executor, planted_dir, tmp_path):
    results = tmp_path / "r"
    done, held = _configs()
    assert [e.status for e in run_sweep([done], _options(planted_dir, results), executor=executor)] == [store.STATUS_COMPLETED]
    claim = claims.claim_run(results, held.hash(fingerprint_of("planted", planted_dir)))  # this live process holds it
    try:
        entries = run_sweep([done, held], _options(planted_dir, results), executor=executor)
    finally:
        claims.release_run(claim)
    assert [entry.status for entry in entries] == ["skipped", CLAIMED]
    assert entries[0].outcome.run_dir.name == store.read_runs(results)["run_id"].item()  # nothing trained twice or behind the claim
