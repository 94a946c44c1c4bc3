"""`mmlbench preprocess NAME` checks the raw files against the registry (size + sha256) first."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmlbench.cli import app
from mmlbench.data import registry
from mmlbench.data.download import CORRUPT, VERIFIED, file_status
from mmlbench.data.processed import read_interactions
from mmlbench.data.registry import DatasetSpec, RemoteFile

runner = CliRunner()
RAW = {"train.txt": b"0 0 1\n1 1 2\n", "test.txt": b"0 2\n1 0\n"}


@pytest.fixture
def tiny(monkeypatch) -> DatasetSpec:
    """A registry holding only `tiny`, whose registered bytes are RAW."""
    files = tuple(
        RemoteFile(name, f"http://127.0.0.1/tiny/{name}", len(data), hashlib.sha256(data).hexdigest())
        for name, data in RAW.items()
    )
    spec = DatasetSpec("tiny", files, users=2, items=3, train=4, test=2, citation="test fixture")
    monkeypatch.setattr(registry, "DATASETS", {"tiny": spec})
    return spec


def write_raw(data_dir: Path, **changed: bytes) -> Path:
    raw = data_dir / "tiny" / "raw"
    raw.mkdir(parents=True)
    for name, data in {**RAW, **changed}.items():
        (raw / name).write_bytes(data)
    return raw


def preprocess(data_dir: Path, *args: str):
    return runner.invoke(app, ["preprocess", "tiny", "--data-dir", str(data_dir), *args])


def test_verified_raw_files_are_preprocessed(tiny, tmp_path):
    write_raw(tmp_path)
    result = preprocess(tmp_path)
    assert result.exit_code == 0, result.output
    assert len(read_interactions(tmp_path / "tiny" / "processed")) == 6


@pytest.mark.parametrize(
    ("test_bytes", "problem"),
    [
        (b"0 2\n", "size mismatch: expected 8 bytes, got 4 (truncated)"),
        (b"0 2\n1 3\n", "checksum mismatch"),  # same size, other bytes
    ],
)
def test_corrupt_raw_file_is_refused_like_download_list_says(tiny, tmp_path, test_bytes, problem):
    raw = write_raw(tmp_path, **{"test.txt": test_bytes})
    assert file_status(tiny.files[1], raw) == CORRUPT and file_status(tiny.files[0], raw) == VERIFIED
    result = preprocess(tmp_path)
    assert result.exit_code == 1
    assert str(raw / "test.txt") in result.output and problem in result.output
    assert "mmlbench download tiny --force" in result.output and "--trust-raw" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "tiny" / "processed").exists()


def test_trust_raw_uses_modified_files(tiny, tmp_path):
    write_raw(tmp_path, **{"test.txt": b"0 2\n1 3\n"})
    result = preprocess(tmp_path, "--trust-raw")
    assert result.exit_code == 0, result.output
    frame = read_interactions(tmp_path / "tiny" / "processed")
    test_pairs = frame[frame["split"] == "test"]
    assert sorted(zip(test_pairs["user"], test_pairs["item"])) == [(0, 2), (1, 3)]


def test_trust_raw_is_only_for_registered_datasets(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("user,item\n1,2\n1,3\n")
    args = ["--input", str(events), "--name", "mine", "--user-col", "user", "--item-col", "item"]
    result = runner.invoke(
        app, ["preprocess", *args, "--split", "leave-one-out", "--trust-raw", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "--trust-raw: only for a registered dataset" in result.output
