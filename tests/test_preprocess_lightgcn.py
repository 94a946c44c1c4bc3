"""`mmlbench preprocess NAME`: LightGCN text files into the processed format.

The raw files here are hand-made, not Gowalla's registered bytes, so every run passes
--trust-raw; test_preprocess_raw_check.py tests the check it skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmlbench.cli import app
from mmlbench.data.preprocess import preprocess_dataset
from mmlbench.data.processed import FORMAT_VERSION, META_FILE, read_interactions, read_meta
from mmlbench.errors import MMLBenchError

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()

# User 2 has a train line with no items; user 3 lists item 4 twice.
TRAIN = "0 0 1 2\n1 2 3\n2\n3 1 4 4\n"
TEST = "0 3\n1 0\n2 4\n3 2\n"
TRAIN_ROWS = [(0, 0), (0, 1), (0, 2), (1, 2), (1, 3), (3, 1), (3, 4)]
TEST_ROWS = [(0, 3), (1, 0), (2, 4), (3, 2)]


def write_raw(data_dir: Path, train: str = TRAIN, test: str = TEST, name: str = "gowalla") -> Path:
    raw = data_dir / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "train.txt").write_text(train)
    (raw / "test.txt").write_text(test)
    return raw


def preprocess(data_dir: Path, *args: str):
    return runner.invoke(app, ["preprocess", "gowalla", "--data-dir", str(data_dir), "--trust-raw", *args])


def build(data_dir: Path, **options):
    return preprocess_dataset("gowalla", data_dir, trust_raw=True, **options)


def rows(frame, split):
    part = frame[frame["split"] == split]
    return list(zip(part["user"].tolist(), part["item"].tolist()))


def random_lightgcn(users: int = 40, items: int = 30, seed: int = 0) -> tuple[str, str]:
    """Train/test text for `users` users, each with 6-12 distinct items, 2 of them in test."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for user in range(users):
        chosen = rng.choice(items, size=rng.integers(6, 13), replace=False)
        test.append(" ".join(map(str, [user, *chosen[:2]])))
        train.append(" ".join(map(str, [user, *chosen[2:]])))
    return "\n".join(train) + "\n", "\n".join(test) + "\n"


def test_parses_exact_rows_counts_and_dtypes(tmp_path):
    write_raw(tmp_path)
    result = preprocess(tmp_path)
    assert result.exit_code == 0, result.output
    processed = tmp_path / "gowalla" / "processed"
    frame = read_interactions(processed)
    assert rows(frame, "train") == TRAIN_ROWS
    assert rows(frame, "test") == TEST_ROWS
    assert rows(frame, "valid") == []
    assert str(frame["user"].dtype) == "int32" and str(frame["item"].dtype) == "int32"
    meta = read_meta(processed)
    assert (meta["n_users"], meta["n_items"]) == (4, 5)
    assert meta["interactions"] == {"train": 7, "valid": 0, "test": 4}
    assert meta["density"] == pytest.approx(11 / 20)
    assert meta["source"] == "lightgcn" and meta["format_version"] == FORMAT_VERSION
    assert set(meta["inputs"]) == {"train.txt", "test.txt"}
    assert "dropped 1 duplicate item(s)" in result.output and "line 4" in result.output
    assert "differs from the registry's 29,858" in result.output  # tiny fixture vs real counts


def test_summary_table_lists_counts_and_output(tmp_path):
    write_raw(tmp_path)
    result = preprocess(tmp_path)
    expected = {"users": "4", "items": "5", "train interactions": "7", "test interactions": "4"}
    for label, value in expected.items():
        line = next(line for line in result.stdout.splitlines() if f" {label} " in line)
        assert line.split()[-2] == value
    assert "processed" in result.stdout


def test_user_with_empty_lines_counts_toward_n_users(tmp_path):
    write_raw(tmp_path, train="0 1\n1 0\n5\n", test="0 0\n1 1\n\n5\n")
    build(tmp_path)
    meta = read_meta(tmp_path / "gowalla" / "processed")
    assert meta["n_users"] == 6
    assert meta["interactions"] == {"train": 2, "valid": 0, "test": 2}


def test_tabs_and_crlf_are_whitespace(tmp_path):
    write_raw(tmp_path, train="0\t0  1\r\n1 2\r\n", test="0 2\r\n1 1\r\n")
    build(tmp_path)
    frame = read_interactions(tmp_path / "gowalla" / "processed")
    assert rows(frame, "train") == [(0, 0), (0, 1), (1, 2)]


@pytest.mark.parametrize(
    ("train", "test", "message"),
    [
        ("0 1 x\n1 2\n", "0 2\n", "train.txt:1: 'x' is not an integer id"),
        ("0 1\n1 2.5\n", "0 2\n", "train.txt:2: '2.5' is not an integer id"),
        ("0 1\n1 -2\n", "0 2\n", "train.txt:2: negative id -2"),
        ("0 1\n1 2\n", "0 2\n\n-1 3\n", "test.txt:3: negative id -1"),
        ("0 1\n1 99999999999\n", "0 2\n", "train.txt:2: id 99999999999 is too large"),
        ("0 1\n1 2\n0 3\n", "0 2\n", "train.txt:3: user 0 already has a line (line 1)"),
        ("0 1 2\n1 2\n", "0 3\n1 4 2\n", "test.txt:2: user 1 item 2 is also in"),
        ("", "0 2\n", "train.txt has no interactions"),
        ("0 1\n", "0\n1\n", "test.txt has no interactions"),
    ],
)
def test_bad_raw_files_fail_with_location(tmp_path, train, test, message):
    write_raw(tmp_path, train=train, test=test)
    result = preprocess(tmp_path)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "gowalla" / "processed").exists()


def test_missing_raw_files_name_the_download_command(tmp_path):
    result = preprocess(tmp_path)
    assert result.exit_code == 1
    assert "mmlbench download gowalla" in result.output
    assert not (tmp_path / "gowalla" / "processed").exists()


def test_unknown_dataset_suggests_closest(tmp_path):
    result = runner.invoke(app, ["preprocess", "gowala", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown dataset 'gowala'" in result.output and "Did you mean 'gowalla'" in result.output


def test_generic_options_rejected_for_registered_dataset(tmp_path):
    write_raw(tmp_path)
    result = preprocess(tmp_path, "--split", "random:0.2", "--user-col", "u")
    assert result.exit_code == 1
    assert "--user-col, --split: only for --input FILE" in result.output


def test_no_arguments_shows_help():
    result = runner.invoke(app, ["preprocess"])
    assert "--valid-fraction" in result.output


def test_validation_split_moves_rounded_share_of_each_users_train(tmp_path):
    train, test = random_lightgcn()
    write_raw(tmp_path, train, test)
    build(tmp_path, valid_fraction=0.3, seed=7)
    frame = read_interactions(tmp_path / "gowalla" / "processed")
    per_user = frame.groupby(["user", "split"]).size().unstack(fill_value=0)
    n_train = per_user["train"] + per_user["valid"]
    assert (per_user["valid"] == np.floor(0.3 * n_train + 0.5)).all()
    assert (per_user["train"] >= 1).all()
    original = {(int(line.split()[0]), int(item)) for line in train.splitlines() for item in line.split()[1:]}
    assert set(rows(frame, "train")) | set(rows(frame, "valid")) == original
    assert read_meta(tmp_path / "gowalla" / "processed")["options"] == {"valid_fraction": 0.3, "seed": 7}


def test_validation_never_takes_a_users_last_train_item(tmp_path):
    write_raw(tmp_path, train="0 0\n1 0 1\n", test="0 1\n1 2\n")
    build(tmp_path, valid_fraction=0.9)
    frame = read_interactions(tmp_path / "gowalla" / "processed")
    assert rows(frame, "train") == [(0, 0), (1, 0)] or rows(frame, "train") == [(0, 0), (1, 1)]
    assert len(rows(frame, "valid")) == 1


def test_same_seed_same_bytes_other_seed_other_split(tmp_path):
    write_raw(tmp_path, *random_lightgcn())
    fingerprints = []
    for seed in (1, 1, 2):
        result = build(tmp_path, valid_fraction=0.25, seed=seed, force=True)
        fingerprints.append(result.meta["fingerprint"])
    assert fingerprints[0] == fingerprints[1]
    assert fingerprints[0] != fingerprints[2]


@pytest.mark.parametrize("fraction", ["0", "1", "1.5", "-0.1"])
def test_valid_fraction_outside_open_interval_is_rejected(tmp_path, fraction):
    write_raw(tmp_path)
    result = preprocess(tmp_path, "--valid-fraction", fraction)
    assert result.exit_code == 1
    assert "--valid-fraction must be between 0 and 1" in result.output
    assert not (tmp_path / "gowalla" / "processed").exists()


def test_second_run_is_up_to_date(tmp_path):
    write_raw(tmp_path)
    meta_path = tmp_path / "gowalla" / "processed" / META_FILE
    assert preprocess(tmp_path).exit_code == 0
    first_meta = meta_path.read_text()
    again = preprocess(tmp_path)
    assert again.exit_code == 0 and "up to date" in again.output
    assert meta_path.read_text() == first_meta


def test_other_options_need_force_and_change_nothing_without_it(tmp_path):
    write_raw(tmp_path)
    meta_path = tmp_path / "gowalla" / "processed" / META_FILE
    assert preprocess(tmp_path).exit_code == 0
    first_meta = meta_path.read_text()
    refused = preprocess(tmp_path, "--valid-fraction", "0.5")
    assert refused.exit_code == 1
    assert "--valid-fraction: none -> 0.5" in refused.output and "pass --force" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and "Traceback" not in refused.output
    assert meta_path.read_text() == first_meta
    forced = preprocess(tmp_path, "--valid-fraction", "0.5", "--force")
    assert forced.exit_code == 0 and "written" in forced.output
    assert read_meta(meta_path.parent)["options"]["valid_fraction"] == 0.5
    assert "up to date" in preprocess(tmp_path, "--valid-fraction", "0.5").output


def test_changed_raw_file_needs_force(tmp_path):
    raw = write_raw(tmp_path)
    assert preprocess(tmp_path).exit_code == 0
    (raw / "test.txt").write_text(TEST + "4 0\n")
    refused = preprocess(tmp_path)
    assert refused.exit_code == 1
    assert "test.txt changed" in refused.output and "pass --force" in refused.output
    assert read_meta(tmp_path / "gowalla" / "processed")["interactions"]["test"] == 4
    assert preprocess(tmp_path, "--force").exit_code == 0
    assert read_meta(tmp_path / "gowalla" / "processed")["interactions"]["test"] == 5


def test_other_options_raise_and_force_rebuilds(tmp_path):
    write_raw(tmp_path)
    assert not build(tmp_path).up_to_date
    assert build(tmp_path).up_to_date
    with pytest.raises(MMLBenchError, match="--force"):
        build(tmp_path, valid_fraction=0.5)
    assert not build(tmp_path, valid_fraction=0.5, force=True).up_to_date


def test_tampered_output_is_rebuilt(tmp_path):
    write_raw(tmp_path)
    first = build(tmp_path)
    (first.path / "interactions.parquet").write_bytes(b"not parquet")
    again = build(tmp_path)
    assert not again.up_to_date
    assert len(read_interactions(first.path)) == 11


def test_newer_format_is_refused_unless_forced(tmp_path):
    write_raw(tmp_path)
    processed = tmp_path / "gowalla" / "processed"
    processed.mkdir(parents=True)
    (processed / META_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION + 1}))
    refused = preprocess(tmp_path)
    assert refused.exit_code == 1
    assert "newer" in refused.output and "--force" in refused.output
    assert read_meta(processed)["format_version"] == FORMAT_VERSION + 1
    forced = preprocess(tmp_path, "--force")
    assert forced.exit_code == 0
    assert read_meta(processed)["format_version"] == FORMAT_VERSION


def test_read_meta_of_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(MMLBenchError, match="run `mmlbench preprocess` first"):
        read_meta(tmp_path / "nothing")


def test_real_subprocess_writes_and_reports_errors(tmp_path):
    write_raw(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "mmlbench", "preprocess", "gowalla", "--trust-raw"]
    command += ["--data-dir", str(tmp_path)]
    ok = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "gowalla (lightgcn): written" in ok.stdout
    assert "train interactions" in ok.stdout
    (tmp_path / "gowalla" / "raw" / "train.txt").write_text("0 1\nzero 2\n")
    bad = subprocess.run([*command, "--force"], capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 1
    assert "train.txt:2: 'zero' is not an integer id" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert len(read_interactions(tmp_path / "gowalla" / "processed")) == 11  # old output kept
