"""`mmlbench preprocess --input FILE`: CSV/TSV/Parquet into the processed format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mmlbench.cli import app
from mmlbench.data.generic import GenericOptions, Table, k_core
from mmlbench.data.preprocess import preprocess_file
from mmlbench.data.processed import read_id_map, read_interactions, read_meta
from mmlbench.data.splits import parse_split

runner = CliRunner()

# Sorted original ids: users u10 < u2 < u9 (as strings), items a < b < c.
# (u9, a) appears twice: the later row (ts 70) is the one kept.
EVENTS = pd.DataFrame(
    {
        "user": ["u10", "u10", "u10", "u9", "u9", "u9", "u2"],
        "item": ["b", "a", "c", "a", "b", "a", "c"],
        "rating": [5, 4, 3, 5, 2, 1, 4],
        "ts": [100, 200, 300, 50, 60, 70, 10],
    }
)
COLUMNS = ["--user-col", "user", "--item-col", "item"]


def rows(frame, split):
    part = frame[frame["split"] == split]
    return list(zip(part["user"].tolist(), part["item"].tolist()))


def write(tmp_path, frame=EVENTS, file="events.csv"):
    path = tmp_path / file
    if file.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t" if ".tsv" in file else ",", index=False)
    return path


def invoke(tmp_path, path, *args):
    base = ["preprocess", "--input", str(path), "--name", "mine", "--data-dir", str(tmp_path / "data")]
    return runner.invoke(app, [*base, *args])


def processed(tmp_path):
    return tmp_path / "data" / "mine" / "processed"


def options(split="leave-one-out", **kwargs):
    return GenericOptions(user_col="user", item_col="item", split=parse_split(split), **kwargs)


def synthetic_events(users=30, seed=0):
    """Users with 1 to 9 distinct items each (user 0 has exactly one), integer timestamps."""
    rng = np.random.default_rng(seed)
    records = []
    for user in range(users):
        count = 1 if user == 0 else int(rng.integers(1, 10))
        for rank, item in enumerate(rng.choice(40, size=count, replace=False)):
            records.append((user, int(item), rank * 10 + int(rng.integers(0, 5))))
    return pd.DataFrame(records, columns=["user", "item", "ts"])


def test_csv_leave_one_out_by_time_gives_exact_rows_and_id_maps(tmp_path):
    result = invoke(tmp_path, write(tmp_path), *COLUMNS, "--time-col", "ts", "--split", "leave-one-out")
    assert result.exit_code == 0, result.output
    frame = read_interactions(processed(tmp_path))
    assert rows(frame, "train") == [(0, 0), (0, 1), (1, 2), (2, 1)]
    assert rows(frame, "test") == [(0, 2), (2, 0)]
    users = read_id_map(processed(tmp_path), "user")
    assert users["original"].tolist() == ["u10", "u2", "u9"]
    assert users["index"].tolist() == [0, 1, 2] and str(users["index"].dtype) == "int32"
    assert read_id_map(processed(tmp_path), "item")["original"].tolist() == ["a", "b", "c"]
    meta = read_meta(processed(tmp_path))
    assert meta["source"] == "generic" and meta["inputs"].keys() == {"events.csv"}
    assert meta["options"]["split"] == "leave-one-out" and meta["options"]["seed"] is None
    assert "collapsed 1 duplicate" in result.output
    assert "mine (generic): written" in result.stdout


@pytest.mark.parametrize("file", ["events.tsv", "events.parquet", "events.csv.gz"])
def test_tsv_parquet_and_compressed_csv_match_csv(tmp_path, file):
    args = [*COLUMNS, "--time-col", "ts", "--split", "temporal:0.5"]
    csv_options = options("temporal:0.5", time_col="ts")
    from_csv = preprocess_file(write(tmp_path), "a", csv_options, tmp_path / "data")
    other = invoke(tmp_path, write(tmp_path, file=file), *args)
    assert other.exit_code == 0, other.output
    assert read_meta(processed(tmp_path))["fingerprint"] == from_csv.meta["fingerprint"]


def test_temporal_split_holds_out_latest_share_per_user(tmp_path):
    preprocess_file(write(tmp_path), "mine", options("temporal:0.5", time_col="ts"), tmp_path / "data")
    frame = read_interactions(processed(tmp_path))
    # u10 (3 rows): round(1.5) = 2 latest (a@200, c@300); u9: 1 (a@70); u2 has one row.
    assert rows(frame, "test") == [(0, 0), (0, 2), (2, 0)]


def test_dates_as_strings_order_the_split(tmp_path):
    frame = pd.DataFrame(
        {"user": [1, 1, 1], "item": [7, 8, 9], "when": ["2024-03-01", "2023-12-31", "2024-01-15 10:00"]}
    )
    preprocess_file(write(tmp_path, frame), "mine", options(time_col="when"), tmp_path / "data")
    assert rows(read_interactions(processed(tmp_path)), "test") == [(0, 0)]


def test_numeric_ids_are_sorted_numerically(tmp_path):
    frame = pd.DataFrame({"user": [10, 9, 2, 10], "item": [100, 20, 3, 3]})
    preprocess_file(write(tmp_path, frame), "mine", options(), tmp_path / "data")
    assert read_id_map(processed(tmp_path), "user")["original"].tolist() == ["2", "9", "10"]
    assert read_id_map(processed(tmp_path), "item")["original"].tolist() == ["3", "20", "100"]


def test_min_rating_applies_to_the_latest_row_of_each_pair(tmp_path):
    args = [*COLUMNS, "--rating-col", "rating", "--min-rating", "3", "--split", "leave-one-out"]
    args += ["--time-col", "ts"]
    assert invoke(tmp_path, write(tmp_path), *args).exit_code == 0
    frame = read_interactions(processed(tmp_path))
    # (u9, a) is collapsed to its latest row (rating 1) and then dropped, as is (u9, b, 2).
    assert len(frame) == 4
    assert read_id_map(processed(tmp_path), "user")["original"].tolist() == ["u10", "u2"]
    assert read_meta(processed(tmp_path))["options"]["min_rating"] == 3


def test_pair_whose_latest_rating_is_low_is_not_a_positive(tmp_path):
    frame = pd.DataFrame(
        [(1, 1, 5, 1), (1, 1, 1, 100), (1, 2, 5, 50), (2, 1, 5, 10), (2, 2, 4, 20)],
        columns=["user", "item", "rating", "timestamp"],
    )
    args = [*COLUMNS, "--rating-col", "rating", "--min-rating", "4", "--time-col", "timestamp"]
    result = invoke(tmp_path, write(tmp_path, frame), *args, "--split", "leave-one-out")
    assert result.exit_code == 0, result.output
    users = read_id_map(processed(tmp_path), "user")["original"].tolist()
    items = read_id_map(processed(tmp_path), "item")["original"].tolist()
    kept = read_interactions(processed(tmp_path))
    pairs = {(users[u], items[i]) for u, i in zip(kept["user"], kept["item"])}
    assert pairs == {("1", "2"), ("2", "1"), ("2", "2")}


def test_k_core_cascades_until_stable():
    # u1, u2 x i1, i2 is a 2-core; the chain u3-i3-u4-i4-u5 unravels one step per pass.
    pairs = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 2), (3, 3), (4, 3), (4, 4), (5, 4)]
    users, items = (np.array(column) for column in zip(*pairs))
    table = Table(users, items, None, np.arange(6), np.arange(5))
    kept, passes = k_core(table, min_user=2, min_item=2)
    assert passes == 5
    assert sorted(zip(kept.users.tolist(), kept.items.tolist())) == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_k_core_through_the_cli_reports_and_renumbers(tmp_path):
    pairs = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 2), (3, 3), (4, 3), (4, 4), (5, 4)]
    path = write(tmp_path, pd.DataFrame(pairs, columns=["user", "item"]))
    args = [*COLUMNS, "--min-user-interactions", "2", "--min-item-interactions", "2", "--split", "random:0.5"]
    result = invoke(tmp_path, path, *args)
    assert result.exit_code == 0, result.output
    assert "k-core removed 5 interaction(s) in 5 pass(es)" in result.output
    meta = read_meta(processed(tmp_path))
    assert (meta["n_users"], meta["n_items"]) == (2, 2)
    assert meta["interactions"] == {"train": 2, "valid": 0, "test": 2}
    assert read_id_map(processed(tmp_path), "user")["original"].tolist() == ["1", "2"]


def test_random_split_sizes_and_seed(tmp_path):
    path = write(tmp_path, synthetic_events())
    fingerprints = []
    for seed in (3, 3, 4):
        result = preprocess_file(
            path, "mine", options("random:0.3"), tmp_path / "data", seed=seed, force=True
        )
        fingerprints.append(result.meta["fingerprint"])
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]
    frame = read_interactions(processed(tmp_path))
    per_user = frame.groupby(["user", "split"]).size().unstack(fill_value=0)
    total = per_user["train"] + per_user["test"]
    expected = np.minimum(np.floor(0.3 * total + 0.5), total - 1)
    assert (per_user["test"] == expected).all()
    assert per_user.loc[0, "test"] == 0 and per_user.loc[0, "train"] == 1  # a one-row user


def test_leave_one_out_without_time_is_seeded(tmp_path):
    path = write(tmp_path, synthetic_events())
    first = preprocess_file(path, "mine", options(), tmp_path / "data", seed=1)
    frame = read_interactions(processed(tmp_path))
    per_user = frame.groupby("user")["split"].apply(lambda s: (s == "test").sum())
    total = frame.groupby("user").size()
    assert (per_user == (total >= 2).astype(int)).all()
    assert first.meta["options"]["seed"] == 1
    again = preprocess_file(path, "mine", options(), tmp_path / "data", seed=1, force=True)
    assert again.meta["fingerprint"] == first.meta["fingerprint"]


def test_validation_split_on_generic_train_rows(tmp_path):
    path = write(tmp_path, synthetic_events())
    args = [*COLUMNS, "--time-col", "ts", "--split", "leave-one-out"]
    args += ["--valid-fraction", "0.5", "--seed", "9"]
    assert invoke(tmp_path, path, *args).exit_code == 0
    frame = read_interactions(processed(tmp_path))
    counts = frame.groupby(["user", "split"]).size().unstack(fill_value=0)
    n_train = counts["train"] + counts["valid"]
    assert (counts["valid"] == np.minimum(np.floor(0.5 * n_train + 0.5), n_train - 1)).all()
    assert counts["valid"].sum() > 0
    assert read_meta(processed(tmp_path))["options"]["seed"] is None  # nothing random: all by time


def test_random_split_draws_validation_with_the_seed(tmp_path):
    path = write(tmp_path, synthetic_events())
    args = [*COLUMNS, "--time-col", "ts", "--split", "random:0.2", "--valid-fraction", "0.3", "--seed", "9"]
    assert invoke(tmp_path, path, *args).exit_code == 0
    assert read_meta(processed(tmp_path))["options"]["seed"] == 9


def split_times(tmp_path, events):
    """The processed rows with each row's original timestamp."""
    frame = read_interactions(processed(tmp_path))
    users = read_id_map(processed(tmp_path), "user")["original"].astype(int).to_numpy()
    items = read_id_map(processed(tmp_path), "item")["original"].astype(int).to_numpy()
    frame = frame.assign(user=users[frame["user"]], item=items[frame["item"]])
    return frame.merge(events, on=["user", "item"], validate="one_to_one")


@pytest.mark.parametrize("split", ["temporal:0.2", "leave-one-out"])
def test_time_ordered_split_takes_validation_from_the_latest_train_rows(tmp_path, split):
    events = synthetic_events(users=200, seed=3)
    args = [*COLUMNS, "--time-col", "ts", "--split", split, "--valid-fraction", "0.3"]
    assert invoke(tmp_path, write(tmp_path, events), *args).exit_code == 0
    frame = split_times(tmp_path, events)
    latest = frame.groupby(["user", "split"])["ts"].agg(["min", "max"]).unstack()
    has_valid = latest[("min", "valid")].notna()
    assert has_valid.sum() > 50
    train_after_valid = latest[("max", "train")] > latest[("min", "valid")]
    valid_after_test = latest[("max", "valid")] > latest[("min", "test")]
    assert not train_after_valid.any() and not valid_after_test.any()
    counts = frame.groupby(["user", "split"]).size().unstack(fill_value=0)
    n_train = counts["train"] + counts["valid"]
    assert (counts["valid"] == np.minimum(np.floor(0.3 * n_train + 0.5), n_train - 1)).all()


def test_generic_is_idempotent_and_needs_force_for_new_options_or_input(tmp_path):
    path = write(tmp_path)
    args = [*COLUMNS, "--time-col", "ts", "--split", "leave-one-out"]
    assert "written" in invoke(tmp_path, path, *args).output
    assert "up to date" in invoke(tmp_path, path, *args).output
    args[-1] = "temporal:0.5"
    refused = invoke(tmp_path, path, *args)
    assert refused.exit_code == 1
    assert "--split: leave-one-out -> temporal:0.5" in refused.output and "pass --force" in refused.output
    assert read_meta(processed(tmp_path))["options"]["split"] == "leave-one-out"
    assert "written" in invoke(tmp_path, path, *args, "--force").output
    path.write_text(path.read_text() + "u3,a,5,1\n")
    refused = invoke(tmp_path, path, *args)
    assert refused.exit_code == 1 and "events.csv changed" in refused.output
    assert read_meta(processed(tmp_path))["n_users"] == 3
    assert "written" in invoke(tmp_path, path, *args, "--force").output
    assert read_meta(processed(tmp_path))["n_users"] == 4


def test_other_input_file_under_the_same_name_needs_force(tmp_path):
    args = [*COLUMNS, "--split", "leave-one-out"]
    assert invoke(tmp_path, write(tmp_path), *args).exit_code == 0
    refused = invoke(tmp_path, write(tmp_path, file="other.csv"), *args)
    assert refused.exit_code == 1
    assert "input events.csv -> other.csv" in refused.output and "pass --force" in refused.output


def _bad_cases(tmp_path):
    """(file, extra args, expected message) for each way generic input can be wrong."""
    good = write(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text("user,item\n")
    no_user = tmp_path / "no_user.csv"
    no_user.write_text("user,item\n1,2\n,3\n")
    bad_time = tmp_path / "bad_time.csv"
    bad_time.write_text("user,item,ts\n1,2,soon\n1,3,later\n")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"this is not parquet")
    ragged = tmp_path / "ragged.csv"  # a comma too many (an unquoted title?): whose value is which?
    ragged.write_text("user,item,rating\n1,2,5\n3,4,5,9\n5,6,1\n")
    short = tmp_path / "short.csv"
    short.write_text("user,item,rating\n1,2,5\n3,4\n5,6,1\n")
    twice = tmp_path / "twice.csv"
    twice.write_text("user,item,user\n1,2,3\n2,3,4\n")
    unrated = tmp_path / "unrated.csv"
    unrated.write_text("user,item,rating\n1,2,5\n1,3,\n2,3,4\n")
    directory = tmp_path / "folder.csv"
    directory.mkdir()
    split = ["--split", "leave-one-out"]
    return [
        (
            good,
            ["--user-col", "usr", "--item-col", "item", *split],
            "'usr' not in events.csv; available: user, item",
        ),
        (empty, [*COLUMNS, *split], "empty.csv is empty"),
        (header_only, [*COLUMNS, *split], "header.csv has no interactions"),
        (no_user, [*COLUMNS, *split], "column 'user' is empty in 1 row(s) (first: data row 2)"),
        (bad_time, [*COLUMNS, "--time-col", "ts", *split], "time column 'ts' holds values that are neither"),
        (garbage, [*COLUMNS, *split], "cannot read"),
        (ragged, [*COLUMNS, *split], "ragged.csv: CSV parse error: Expected 3 columns, got 4: 3,4,5,9"),
        (short, [*COLUMNS, *split], "Expected 3 columns, got 2: 3,4"),
        (twice, [*COLUMNS, *split], "the header of twice.csv names column(s) 'user' more than once"),
        (unrated, [*COLUMNS, *split, "--rating-col", "rating", "--min-rating", "4"], "column 'rating' is empty in 1 row(s) (first: data row 2)"),
        (directory, [*COLUMNS, *split], "cannot read"),
        (tmp_path / "missing.csv", [*COLUMNS, *split], "missing.csv not found"),
        (tmp_path / "events.xlsx", [*COLUMNS, *split], "cannot tell the format of events.xlsx"),
        (good, [*COLUMNS, "--split", "temporal:0.2"], "--split temporal:0.2 needs --time-col"),
        (good, [*COLUMNS, "--split", "random"], "--split 'random' not understood"),
        (good, [*COLUMNS, "--split", "kfold:5"], "--split 'kfold:5' not understood"),
        (good, [*COLUMNS, "--split", "random:x"], "'x' is not a number"),
        (good, [*COLUMNS, "--split", "random:1.2"], "--split random fraction must be between 0 and 1"),
        (good, [*COLUMNS, "--split", "random:0"], "--split random fraction must be between 0 and 1"),
        (good, [*COLUMNS, *split, "--valid-fraction", "1"], "--valid-fraction must be between 0 and 1"),
        (good, [*COLUMNS, *split, "--min-rating", "3"], "--min-rating needs --rating-col"),
        (good, [*COLUMNS, *split, "--rating-col", "user", "--min-rating", "3"], "'user' is not numeric"),
        (good, [*COLUMNS, *split, "--rating-col", "rating", "--min-rating", "9"], "no interaction has"),
        (good, [*COLUMNS, *split, "--min-user-interactions", "0"], "--min-user-interactions must be"),
        (good, [*COLUMNS, *split, "--min-item-interactions", "3"], "removed every interaction"),
        (good, ["--item-col", "item", *split], "--input needs --user-col"),
        (good, COLUMNS, "--input needs --split"),
    ]


def test_every_bad_input_fails_cleanly_and_writes_nothing(tmp_path):
    for path, args, message in _bad_cases(tmp_path):
        result = invoke(tmp_path, path, *args)
        assert result.exit_code == 1, (message, result.output)
        assert message in result.output, (message, result.output)
        assert "Traceback" not in result.output
        assert not (tmp_path / "data").exists(), message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gowalla", "--name", "mine"], "give either NAME ('gowalla') or --input FILE, not both"),
        (["--name", "gowalla"], "--name 'gowalla' is a registered dataset"),
        (["--name", "../up"], "--name '../up' must be letters (of any alphabet), digits, '.', '_' or '-', starting with a letter or digit"),
        (["--name", "-x"], "--name '-x' must be letters"),
        (["--name", "a b"], "--name 'a b' must be letters"),
    ],
)
def test_names_are_checked(tmp_path, args, message):
    path = write(tmp_path)
    base = ["preprocess", "--input", str(path), *COLUMNS, "--split", "leave-one-out"]
    result = runner.invoke(app, [*base, *args, "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "data").exists()


def test_an_unregistered_name_says_how_to_preprocess_your_own_data(tmp_path):
    result = runner.invoke(app, ["preprocess", "mydata", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "unknown dataset 'mydata'" in result.stderr and "Your own data: `mmlbench preprocess --input FILE --name mydata" in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_name_in_any_alphabet_is_accepted_and_trains(tmp_path):
    result = invoke_named(tmp_path, "naïve-données")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "naïve-données" / "processed" / "meta.json").is_file()
    plan = runner.invoke(app, ["train", "--dataset", "naïve-données", "--data-dir", str(tmp_path / "data"),
                               "--results-dir", str(tmp_path / "r"), "--negatives", "1", "--dry-run"])  # fmt: skip
    assert plan.exit_code == 0, plan.output
    assert "naïve-données-mf-ccl-n1-s2019-" in plan.stdout


def invoke_named(tmp_path, name):
    base = ["preprocess", "--input", str(write(tmp_path)), "--name", name, *COLUMNS, "--split", "leave-one-out"]
    return runner.invoke(app, [*base, "--data-dir", str(tmp_path / "data")])


def test_a_full_disk_names_the_folder_and_leaves_no_empty_one(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    real = pq.write_table

    def write_to_full_disk(table, where, *args, **kwargs):  # every write to /dev/full fails with ENOSPC
        with open("/dev/full", "wb") as full:
            return real(table, full, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_to_full_disk)
    data = tmp_path / "home" / "data"  # neither folder exists yet
    result = runner.invoke(app, ["preprocess", "--input", str(write(tmp_path)), "--name", "mine", *COLUMNS,
                                 "--split", "leave-one-out", "--data-dir", str(data)])  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == f"error: disk full while writing {data / 'mine' / 'processed'}\n"
    assert not (tmp_path / "home").exists()  # the folders made for it are gone again
