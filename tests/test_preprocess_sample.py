"""`preprocess --sample-users F --seed S`: a seeded slice of a dataset's users, for a laptop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mmlbench.cli import app
from mmlbench.data.processed import META_FILE, read_id_map, read_interactions
from mmlbench.paths import processed_dir
from test_preprocess_generic import synthetic_events
from test_preprocess_lightgcn import random_lightgcn, write_raw

runner = CliRunner()


def slice_of(data_dir, *args):
    return runner.invoke(
        app, ["preprocess", "gowalla", "--data-dir", str(data_dir), "--trust-raw", "--name", "gowalla-s", *args]
    )


def original_rows(folder) -> set[tuple[int, int, str]]:
    """The slice's rows in the full dataset's ids, through its id maps."""
    frame = read_interactions(folder)
    users = read_id_map(folder, "user").set_index("index")["original"].astype(int)
    items = read_id_map(folder, "item").set_index("index")["original"].astype(int)
    return set(zip(users[frame["user"]].tolist(), items[frame["item"]].tolist(), frame["split"].tolist()))


@pytest.fixture
def raw_dir(tmp_path):
    data_dir = tmp_path / "data"
    write_raw(data_dir, *random_lightgcn(users=40, items=30))
    return data_dir


def test_slice_keeps_a_seeded_share_of_users_with_all_their_rows(raw_dir):
    assert runner.invoke(app, ["preprocess", "gowalla", "--data-dir", str(raw_dir), "--trust-raw"]).exit_code == 0
    result = slice_of(raw_dir, "--sample-users", "0.25", "--seed", "3")
    assert result.exit_code == 0, result.output

    full = read_interactions(processed_dir("gowalla", raw_dir))
    folder = processed_dir("gowalla-s", raw_dir)
    meta = json.loads((folder / META_FILE).read_text())
    kept_users = {user for user, _, _ in original_rows(folder)}
    assert meta["n_users"] == len(kept_users) == 10  # round(0.25 * 40)
    # Every row of a kept user is there, none of another user's, and the ids are contiguous.
    expected = {
        (u, i, s) for u, i, s in zip(full["user"], full["item"], full["split"]) if u in kept_users
    }
    assert original_rows(folder) == expected
    sliced = read_interactions(folder)
    assert sorted(sliced["user"].unique()) == list(range(meta["n_users"]))
    assert sorted(sliced["item"].unique()) == list(range(meta["n_items"]))
    assert meta["options"]["sample_users"] == 0.25 and meta["options"]["seed"] == 3
    # The whole dataset stays processed beside the slice.
    assert json.loads((processed_dir("gowalla", raw_dir) / META_FILE).read_text())["n_users"] == 40


def test_same_seed_same_slice_other_seed_other_users(raw_dir):
    assert slice_of(raw_dir, "--sample-users", "0.25", "--seed", "3").exit_code == 0
    first = original_rows(processed_dir("gowalla-s", raw_dir))
    fingerprint = json.loads((processed_dir("gowalla-s", raw_dir) / META_FILE).read_text())["fingerprint"]
    assert slice_of(raw_dir, "--sample-users", "0.25", "--seed", "3", "--force").exit_code == 0
    assert original_rows(processed_dir("gowalla-s", raw_dir)) == first

    result = slice_of(raw_dir, "--sample-users", "0.25", "--seed", "4")
    assert result.exit_code == 1 and "--seed: 3 -> 4" in result.output and "--force" in result.output
    assert slice_of(raw_dir, "--sample-users", "0.25", "--seed", "4", "--force").exit_code == 0
    assert original_rows(processed_dir("gowalla-s", raw_dir)) != first
    meta = json.loads((processed_dir("gowalla-s", raw_dir) / META_FILE).read_text())
    assert meta["fingerprint"] != fingerprint  # runs on the two slices never share a cell


def test_slice_with_a_validation_split(raw_dir):
    result = slice_of(raw_dir, "--sample-users", "0.5", "--valid-fraction", "0.2", "--seed", "1")
    assert result.exit_code == 0, result.output
    frame = read_interactions(processed_dir("gowalla-s", raw_dir))
    assert set(frame["split"]) == {"train", "valid", "test"}


def test_sample_of_every_user_keeps_the_data(raw_dir):
    assert runner.invoke(app, ["preprocess", "gowalla", "--data-dir", str(raw_dir), "--trust-raw"]).exit_code == 0
    assert slice_of(raw_dir, "--sample-users", "1").exit_code == 0
    full = read_interactions(processed_dir("gowalla", raw_dir))
    sliced = read_interactions(processed_dir("gowalla-s", raw_dir))
    pd.testing.assert_frame_equal(full, sliced)


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "nan"])
def test_bad_fractions_are_one_line_and_write_nothing(raw_dir, value):
    result = slice_of(raw_dir, "--sample-users", value)
    assert result.exit_code == 1
    assert "--sample-users must be more than 0 and at most 1" in result.output
    assert not (raw_dir / "gowalla-s").exists()


def test_another_registered_name_is_refused(raw_dir):
    result = runner.invoke(
        app, ["preprocess", "gowalla", "--data-dir", str(raw_dir), "--trust-raw", "--name", "yelp2018", "--sample-users", "0.5"]
    )
    assert result.exit_code == 1 and "is a registered dataset" in result.output


def test_generic_input_slice_maps_back_to_the_input_ids(tmp_path):
    events = synthetic_events(users=30)
    path = tmp_path / "events.csv"
    events.to_csv(path, index=False)
    result = runner.invoke(app, [
        "preprocess", "--input", str(path), "--name", "mine", "--user-col", "user", "--item-col", "item",
        "--time-col", "ts", "--split", "leave-one-out", "--sample-users", "0.5", "--seed", "2",
        "--data-dir", str(tmp_path / "data"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = processed_dir("mine", tmp_path / "data")
    kept = original_rows_generic(folder)
    users = {user for user, _ in kept}
    assert len(users) == 15
    assert kept == {(u, i) for u, i in zip(events["user"], events["item"]) if u in users}


def original_rows_generic(folder) -> set[tuple[int, int]]:
    frame = read_interactions(folder)
    users = read_id_map(folder, "user").set_index("index")["original"].astype(int)
    items = read_id_map(folder, "item").set_index("index")["original"].astype(int)
    return set(zip(users[frame["user"]].tolist(), items[frame["item"]].tolist()))


def test_trains_on_the_slice(raw_dir, tmp_path):
    assert slice_of(raw_dir, "--sample-users", "0.5", "--seed", "1").exit_code == 0
    result = runner.invoke(app, [
        "train", "--dataset", "gowalla-s", "--data-dir", str(raw_dir), "--results-dir", str(tmp_path / "results"),
        "--negatives", "5", "--epochs", "1", "--batch-size", "32", "--k", "5", "--monitor", "recall@5",
        "--device", "cpu", "-q", "--no-fetch",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.isfinite(pd.read_parquet(next((tmp_path / "results" / "runs").glob("*/run.parquet")))["recall@5"]).all()
