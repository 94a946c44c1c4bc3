"""`train` fetches a registered dataset it needs: download, preprocess, then train; --no-fetch does not.

A tiny registered dataset in the LightGCN format is served from 127.0.0.1 (or a local folder);
no test needs the internet.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from http_fixture import FileServer, serve
from typer.testing import CliRunner

from mmlbench.cli import app
from mmlbench.data import registry
from mmlbench.data.download import MIRROR_ENV
from mmlbench.data.registry import DatasetSpec, RemoteFile
from mmlbench import store

runner = CliRunner()
USERS, ITEMS = 10, 15
# User u saw items u..u+3 in train and u+7 in test (mod ITEMS): every item occurs, no overlap.
TRAIN = "".join(f"{u} {' '.join(str((u + j) % ITEMS) for j in range(4))}\n" for u in range(USERS)).encode()
TEST = "".join(f"{u} {(u + 7) % ITEMS}\n" for u in range(USERS)).encode()
PAYLOADS = {"train.txt": TRAIN, "test.txt": TEST}
FAST = ["--negatives", "3", "--batch-size", "16", "--epochs", "1", "--k", "5,10", "--monitor", "recall@10", "--device", "cpu", "-q"]


def _spec(name: str, base_url: str) -> DatasetSpec:
    files = tuple(
        RemoteFile(file, f"{base_url}/{name}/{file}", len(data), hashlib.sha256(data).hexdigest())
        for file, data in PAYLOADS.items()
    )
    return DatasetSpec(name, files, users=USERS, items=ITEMS, train=4 * USERS, test=USERS, citation="test fixture")


pytestmark = pytest.mark.usefixtures("clean_env")  # conftest: no mirror or data home from the caller


@pytest.fixture
def server():
    files = {f"/{name}/{file}": data for name in ("tiny", "unused") for file, data in PAYLOADS.items()}
    with serve(FileServer(files=files)) as running:
        yield running


@pytest.fixture
def registered(monkeypatch, server) -> str:
    """A registry of `tiny` and `unused`, whose URLs point at the local server; returns its URL."""
    datasets = {name: _spec(name, server.base_url) for name in ("tiny", "unused")}
    monkeypatch.setattr(registry, "DATASETS", datasets)
    return server.base_url


def _train(tmp_path: Path, *args: str, dataset: str = "tiny", env: dict[str, str] | None = None):
    paths = ["--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path / "r")]
    return runner.invoke(app, ["train", "--dataset", dataset, *paths, *FAST, *args], env=env)


def _error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def test_train_on_an_empty_data_dir_downloads_preprocesses_and_trains(registered, server, tmp_path):
    result = _train(tmp_path, "--loss", "ccl,bpr")
    assert result.exit_code == 0, result.output
    data = tmp_path / "data"
    assert f"tiny is not in {data}: downloading it (" in result.stderr
    assert f"tiny: preprocessing the raw files (default options) into {data / 'tiny' / 'processed'}" in result.stderr
    assert "warning" not in result.stderr  # the counts match the registry's
    assert sorted(path for path, _ in server.requests) == ["/tiny/test.txt", "/tiny/train.txt"]  # once, not `unused`
    assert not (data / "unused").exists()
    assert store.read_runs(tmp_path / "r")["status"].tolist() == ["completed", "completed"]
    again = _train(tmp_path, "--loss", "ccl,bpr")
    assert again.exit_code == 0 and "downloading" not in again.stderr and "preprocessing" not in again.stderr
    assert len(server.requests) == 2  # nothing fetched the second time


def test_a_mirror_or_a_local_folder_is_the_source(registered, server, tmp_path, monkeypatch):
    dead = _spec("tiny", "http://127.0.0.1:9")  # the registry URLs must not be used
    monkeypatch.setitem(registry.DATASETS, "tiny", dead)
    for file, data in PAYLOADS.items():
        server.files[f"/mirror/tiny/{file}"] = data
    mirrored = _train(tmp_path / "a", env={MIRROR_ENV: f"{server.base_url}/mirror"})
    assert mirrored.exit_code == 0, mirrored.output
    assert f"from {server.base_url}/mirror)" in mirrored.stderr
    folder = tmp_path / "src" / "tiny"
    folder.mkdir(parents=True)
    for file, data in PAYLOADS.items():
        (folder / file).write_bytes(data)
    local = _train(tmp_path / "b", "--source", str(tmp_path / "src"))
    assert local.exit_code == 0, local.output
    assert f"from {tmp_path / 'src'})" in local.stderr
    assert len(store.read_runs(tmp_path / "b" / "r")) == 1


def test_no_fetch_keeps_the_not_preprocessed_error_and_writes_nothing(registered, server, tmp_path):
    result = _train(tmp_path, "--no-fetch")
    assert result.exit_code == 1
    assert f"dataset 'tiny' is not preprocessed in {tmp_path / 'data'}" in _error_line(result.stderr)
    assert result.stderr.strip() == _error_line(result.stderr)  # nothing said about fetching
    assert server.requests == [] and not (tmp_path / "data").exists() and store.read_runs(tmp_path / "r").empty


def test_a_failing_download_is_one_line_and_no_run(registered, server, tmp_path):
    server.status["/tiny/test.txt"] = 404
    result = _train(tmp_path)
    assert result.exit_code == 1
    assert f"HTTP 404 Not Found for {registered}/tiny/test.txt" in _error_line(result.stderr)
    assert not (tmp_path / "data" / "tiny" / "processed").exists()
    assert not (tmp_path / "r").exists()


def test_dry_run_says_it_would_fetch_and_fetches_nothing(registered, server, tmp_path):
    result = _train(tmp_path, "--loss", "ccl,bpr", "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"tiny is not preprocessed in {tmp_path / 'data'}: train would download it (" in result.stderr
    assert "plan: 2 runs (2 to run)" in result.stdout and "tiny-mf-ccl-n3-s2019-?" in result.stdout
    assert server.requests == [] and not (tmp_path / "data").exists()


def test_an_unregistered_dataset_keeps_todays_error(registered, server, tmp_path):
    result = _train(tmp_path, dataset="mine")
    assert result.exit_code == 1
    assert "dataset 'mine' is not preprocessed" in _error_line(result.stderr) and "download" not in result.stderr.split("error:")[0]
    assert server.requests == []


def test_source_with_no_fetch_is_one_line(registered, tmp_path):
    result = _train(tmp_path, "--no-fetch", "--source", str(tmp_path))
    assert result.exit_code == 1
    assert "--source" in _error_line(result.stderr) and "--no-fetch" in result.stderr


def test_raw_files_already_downloaded_are_only_preprocessed(registered, server, tmp_path):
    raw = tmp_path / "data" / "tiny" / "raw"
    raw.mkdir(parents=True)
    for file, data in PAYLOADS.items():
        (raw / file).write_bytes(data)
    result = _train(tmp_path)
    assert result.exit_code == 0, result.output
    assert "downloading" not in result.stderr and "tiny: preprocessing the raw files" in result.stderr
    assert server.requests == []


@pytest.fixture
def sliced(monkeypatch, registered) -> str:
    """`tiny` plus a registered slice of it, `tiny-u50`: half its users, a validation split."""
    monkeypatch.setattr(registry, "SLICES", {"tiny-u50": registry.SliceSpec("tiny-u50", "tiny", 0.5, 0.25, 3)})
    return registered


def test_train_on_a_registered_slice_downloads_its_dataset_and_builds_only_the_slice(sliced, server, tmp_path):
    result = _train(tmp_path, "--loss", "ccl", dataset="tiny-u50")
    assert result.exit_code == 0, result.output
    data = tmp_path / "data"
    assert f"tiny is not in {data}: downloading it (" in result.stderr
    assert (
        f"tiny-u50: preprocessing 50% of tiny's users (seed 3), 25% of each user's train rows as validation "
        f"into {data / 'tiny-u50' / 'processed'}"
    ) in " ".join(result.stderr.split())
    assert not (data / "tiny" / "processed").exists()  # only the slice is built
    run = store.read_runs(tmp_path / "r").iloc[0]
    assert run["status"] == "completed" and run["protocol"] == "validation"
    meta = (data / "tiny-u50" / "processed" / "meta.json").read_text()
    assert '"sample_users": 0.5' in meta and '"n_users": 5' in meta


def test_preprocess_builds_a_registered_slice_by_name_and_refuses_other_options(sliced, tmp_path):
    data = tmp_path / "data"
    assert runner.invoke(app, ["download", "tiny", "--data-dir", str(data), "-q"]).exit_code == 0
    built = runner.invoke(app, ["preprocess", "tiny-u50", "--data-dir", str(data)])
    assert built.exit_code == 0, built.output
    assert "tiny-u50 (lightgcn): written" in built.stdout
    again = runner.invoke(app, ["preprocess", "tiny-u50", "--data-dir", str(data), "--sample-users", "0.3"])
    assert again.exit_code == 1
    assert "'tiny-u50' is a registered slice (50% of tiny's users" in " ".join(again.stderr.split())
    taken = runner.invoke(app, ["preprocess", "tiny", "--data-dir", str(data), "--sample-users", "0.3", "--name", "tiny-u50"])
    assert taken.exit_code == 1 and "--name 'tiny-u50' is a registered slice" in " ".join(taken.stderr.split())


def test_a_slice_not_built_names_the_commands(sliced, tmp_path):
    result = _train(tmp_path, "--loss", "ccl", "--no-fetch", dataset="tiny-u50")
    assert result.exit_code == 1
    assert "run `mmlbench preprocess tiny-u50` (after `mmlbench download tiny`)" in _error_line(result.stderr)
