"""Planted data with a validation split for `tune`'s tests, and a copy whose test split alone is scrambled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmlbench.store import claims
from synthetic import planted_interactions, write_processed

USERS, ITEMS = 120, 60
# A cell of a few seconds: 3 epochs of BPR at 5 negatives on 120 users.
FAST = ["--loss", "bpr", "--negatives", "5", "--batch-size", "64", "--epochs", "3", "--device", "cpu", "-q"]


def make_tune_data(data_dir: Path) -> Path:
    """'planted' (train, valid, test) and 'scrambled': the same train and valid, every test item another one."""
    frame = planted_interactions(USERS, ITEMS, valid=True)
    write_processed(data_dir, "planted", frame, USERS, ITEMS)
    write_processed(data_dir, "scrambled", _scrambled_test(frame), USERS, ITEMS)
    return data_dir


def _scrambled_test(frame):
    """Each test row gets an item its user has nowhere else, drawn at random: test labels unrelated to the user."""
    rng = np.random.default_rng(1)
    frame = frame.copy()
    known = frame[frame["split"] != "test"].groupby("user")["item"].apply(set).to_dict()
    for index in frame.index[frame["split"] == "test"]:
        user = int(frame.at[index, "user"])
        taken = known.setdefault(user, set())
        item = int(rng.choice([i for i in range(ITEMS) if i not in taken]))
        taken.add(item)
        frame.at[index, "item"] = item
    return frame


def tune_args(data_dir: Path, results: Path, *args: str, trials: int = 4, seeds: int = 2) -> list[str]:
    return ["tune", "--dataset", "planted", "--data-dir", str(data_dir), "--results-dir", str(results), *FAST,
            "--trials", str(trials), "--seeds", str(seeds), *args]  # fmt: skip


def journal_trials(results: Path) -> dict[str, list[dict]]:
    """Each study's trials as its journal holds them, read with Optuna: number, state, params, value, attributes."""
    import optuna

    found = {}
    for path in sorted((results / "studies").glob("*.journal")):
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        study = optuna.load_study(study_name=path.stem, storage=storage)
        found[path.stem] = [
            {"number": t.number, "state": t.state.name, "params": t.params, "value": t.value, "attrs": t.user_attrs,
             "intermediate": t.intermediate_values}
            for t in study.get_trials(deepcopy=False)
        ]
    return found


def budget_order(trials: list[dict]) -> list[dict]:
    """The trials that count, in the order of the budget (those given back after an interruption left out)."""
    return [t for t in trials if not t["attrs"].get("given_back")]


def no_live_claims(results: Path) -> bool:
    return claims.live_claims(results) == []


def document(result) -> dict:
    return json.loads(result.stdout)
