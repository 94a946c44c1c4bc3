"""`mmlbench download`: fetch, resume, retry, verify, sources and local status.

Everything runs against a tiny registered dataset served from 127.0.0.1; no test needs the internet.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from http_fixture import FileServer, serve
from typer.testing import CliRunner

from mmlbench import console
from mmlbench.cli import app
from mmlbench.data import registry
from mmlbench.data.download import MIRROR_ENV, download_dataset
from mmlbench.data.registry import DatasetSpec, RemoteFile
from mmlbench.paths import DATA_DIR_ENV

ROOT = Path(__file__).resolve().parents[1]
_rng = random.Random(0)
PAYLOADS = {"train.txt": _rng.randbytes(3000), "test.txt": _rng.randbytes(1200)}
TRAIN = "/tiny/train.txt"
runner = CliRunner()


def make_spec(name: str, base_url: str) -> DatasetSpec:
    files = tuple(
        RemoteFile(file, f"{base_url}/{name}/{file}", len(data), hashlib.sha256(data).hexdigest())
        for file, data in PAYLOADS.items()
    )
    return DatasetSpec(name, files, users=3, items=4, train=5, test=2, citation="test fixture")


pytestmark = pytest.mark.usefixtures("clean_env")  # conftest: no mirror or data home from the caller


@pytest.fixture
def server():
    files = {f"/tiny/{file}": data for file, data in PAYLOADS.items()}
    with serve(FileServer(files=files)) as running:
        yield running


@pytest.fixture
def tiny(monkeypatch, server) -> DatasetSpec:
    """A registry holding only `tiny`, whose URLs point at the local server."""
    spec = make_spec("tiny", server.base_url)
    monkeypatch.setattr(registry, "DATASETS", {"tiny": spec})
    return spec


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


def download(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, ["download", *args], env=env)


def raw(data_dir: Path, name: str = "tiny") -> Path:
    return data_dir / name / "raw"


def assert_verified(data_dir: Path, name: str = "tiny") -> None:
    for file, data in PAYLOADS.items():
        assert (raw(data_dir, name) / file).read_bytes() == data
    assert not list(raw(data_dir, name).glob("*.part"))


def free_port() -> int:
    """A port with nothing listening on it (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- happy paths


def test_download_verifies_and_renames(tiny, server, data_dir):
    result = download("tiny", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert_verified(data_dir)
    assert "tiny/train.txt: 3.0 kB, sha256 verified" in result.stderr
    assert sorted(path for path, _ in server.requests) == ["/tiny/test.txt", TRAIN]


def test_download_dataset_is_a_plain_function(tiny, data_dir):
    paths = download_dataset(tiny, data_dir, backoff=0, quiet=True)
    assert paths == [raw(data_dir) / "train.txt", raw(data_dir) / "test.txt"]
    assert_verified(data_dir)


def test_verified_files_are_skipped_and_force_fetches_again(tiny, server, data_dir):
    assert download("tiny", "--data-dir", str(data_dir)).exit_code == 0
    again = download("tiny", "--data-dir", str(data_dir))
    assert again.exit_code == 0
    assert "tiny/train.txt: already verified" in again.stderr
    assert len(server.requests) == 2
    forced = download("tiny", "--data-dir", str(data_dir), "--force")
    assert forced.exit_code == 0
    assert len(server.requests) == 4
    assert_verified(data_dir)


def test_quiet_prints_nothing_on_success(tiny, data_dir):
    result = download("tiny", "--data-dir", str(data_dir), "--quiet")
    assert result.exit_code == 0
    assert result.output == ""
    assert_verified(data_dir)


def test_progress_bars_when_stderr_is_a_terminal(tiny, data_dir, monkeypatch):
    monkeypatch.setattr(console, "show_progress", lambda quiet: not quiet)
    result = download("tiny", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "━" in result.stderr  # rich's bar
    assert_verified(data_dir)


def test_data_dir_from_environment(tiny, tmp_path):
    home = tmp_path / "elsewhere"
    result = download("tiny", env={DATA_DIR_ENV: str(home)})
    assert result.exit_code == 0, result.output
    assert_verified(home)


# ---------------------------------------------------------------- resume and retry


def test_cut_connection_resumes_with_range(tiny, server, data_dir):
    server.cut_first[TRAIN] = 1000
    result = download("tiny", "--data-dir", str(data_dir), "--retry-delay", "0")
    assert result.exit_code == 0, result.output
    assert server.requests_for(TRAIN) == [None, "bytes=1000-"]
    assert "retry 1 of 3" in result.stderr
    assert_verified(data_dir)


def test_server_ignoring_range_restarts_from_zero(tiny, server, data_dir):
    server.cut_first[TRAIN] = 1000
    server.ignore_range.add(TRAIN)
    result = download("tiny", "--data-dir", str(data_dir), "--retry-delay", "0")
    assert result.exit_code == 0, result.output
    assert server.requests_for(TRAIN) == [None, "bytes=1000-"]
    assert_verified(data_dir)  # the 200 body replaced the .part instead of being appended


def test_rejected_range_restarts_from_zero(tiny, server, data_dir):
    raw(data_dir).mkdir(parents=True)
    (raw(data_dir) / "train.txt.part").write_bytes(PAYLOADS["train.txt"][:500])
    server.reject_range.add(TRAIN)
    result = download("tiny", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert server.requests_for(TRAIN) == ["bytes=500-", None]
    assert_verified(data_dir)


def test_http_404_fails_at_once(tiny, server, data_dir):
    server.status[TRAIN] = 404
    result = download("tiny", "--data-dir", str(data_dir), "--retry-delay", "0")
    assert result.exit_code == 1
    assert f"HTTP 404 Not Found for {server.base_url}{TRAIN}" in result.stderr
    assert "Traceback" not in result.output
    assert len(server.requests_for(TRAIN)) == 1
    assert not (raw(data_dir) / "train.txt").exists()


def test_http_500_is_retried_then_named(tiny, server, data_dir):
    server.status[TRAIN] = 500
    result = download("tiny", "--data-dir", str(data_dir), "--retries", "2", "--retry-delay", "0")
    assert result.exit_code == 1
    assert f"HTTP 500 Internal Server Error for {server.base_url}{TRAIN} after 2 retries" in result.stderr
    assert len(server.requests_for(TRAIN)) == 3


def test_refused_connection_names_host_and_retries(monkeypatch, data_dir):
    port = free_port()
    monkeypatch.setattr(registry, "DATASETS", {"tiny": make_spec("tiny", f"http://127.0.0.1:{port}")})
    result = download("tiny", "--data-dir", str(data_dir), "--retry-delay", "0")
    assert result.exit_code == 1
    assert f"error: cannot reach 127.0.0.1:{port} (connection refused) after 3 retries" in result.stderr
    assert result.stderr.count("retry ") == 3


# ---------------------------------------------------------------- bad bytes


def test_checksum_mismatch_deletes_the_download(tiny, server, data_dir):
    server.files[TRAIN] = bytes(len(PAYLOADS["train.txt"]))
    result = download("tiny", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "checksum mismatch for tiny/train.txt" in result.stderr
    assert "the corrupt download was deleted" in result.stderr
    assert not list(raw(data_dir).iterdir())


def test_truncated_file_is_a_size_mismatch(tiny, server, data_dir):
    server.files[TRAIN] = PAYLOADS["train.txt"][:-100]
    result = download("tiny", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "size mismatch for tiny/train.txt" in result.stderr
    assert "expected 3000 bytes, got 2900 (truncated)" in result.stderr
    assert not list(raw(data_dir).iterdir())


def test_corrupt_final_file_is_fetched_again(tiny, server, data_dir):
    raw(data_dir).mkdir(parents=True)
    (raw(data_dir) / "train.txt").write_bytes(b"garbage")
    result = download("tiny", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "is corrupt (size mismatch" in result.stderr
    assert "fetching it again" in result.stderr
    assert_verified(data_dir)


def test_disk_full_keeps_nothing_under_the_final_name(tiny, data_dir):
    raw(data_dir).mkdir(parents=True)
    # Every write to /dev/full fails with ENOSPC: a real full disk, without filling one.
    (raw(data_dir) / "train.txt.part").symlink_to("/dev/full")
    result = download("tiny", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert f"disk full while writing {raw(data_dir) / 'train.txt.part'}" in result.stderr
    assert not (raw(data_dir) / "train.txt").exists()


# ---------------------------------------------------------------- sources


def write_local_source(folder: Path, name: str = "tiny", files=PAYLOADS) -> None:
    (folder / name).mkdir(parents=True)
    for file, data in files.items():
        (folder / name / file).write_bytes(data)


def test_local_folder_source(tiny, server, data_dir, tmp_path):
    write_local_source(tmp_path / "src")
    result = download("tiny", "--data-dir", str(data_dir), "--source", str(tmp_path / "src"))
    assert result.exit_code == 0, result.output
    assert_verified(data_dir)
    assert server.requests == []


def test_local_source_missing_a_file(tiny, data_dir, tmp_path):
    write_local_source(tmp_path / "src", files={"train.txt": PAYLOADS["train.txt"]})
    result = download("tiny", "--data-dir", str(data_dir), "--source", str(tmp_path / "src"))
    assert result.exit_code == 1
    missing = tmp_path / "src" / "tiny" / "test.txt"
    assert f"tiny/test.txt is missing from the local source: {missing} does not exist" in result.stderr
    assert (raw(data_dir) / "train.txt").read_bytes() == PAYLOADS["train.txt"]


def test_source_folder_that_does_not_exist(tiny, data_dir, tmp_path):
    result = download("tiny", "--data-dir", str(data_dir), "--source", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert f"source folder {tmp_path / 'nowhere'} does not exist" in result.stderr


def test_mirror_from_environment(tiny, server, data_dir):
    for file, data in PAYLOADS.items():
        server.files[f"/mirror/tiny/{file}"] = data
    result = download("tiny", "--data-dir", str(data_dir), env={MIRROR_ENV: f"{server.base_url}/mirror/"})
    assert result.exit_code == 0, result.output
    assert {path for path, _ in server.requests} == {"/mirror/tiny/train.txt", "/mirror/tiny/test.txt"}
    assert_verified(data_dir)


# ---------------------------------------------------------------- --list and bad input


def test_list_shows_each_status(monkeypatch, server, data_dir):
    names = ("is-absent", "is-verified", "is-corrupt", "is-partial", "has-part")
    monkeypatch.setattr(registry, "DATASETS", {name: make_spec(name, server.base_url) for name in names})
    write_local_source(source := data_dir.parent / "src", "is-verified")
    for name in ("is-corrupt", "is-partial"):
        write_local_source(source, name, files={"train.txt": PAYLOADS["train.txt"]})
    source_arg = ["--data-dir", str(data_dir), "--source", str(source), "--quiet"]
    assert download("is-verified", *source_arg).exit_code == 0
    assert download("is-corrupt", *source_arg).exit_code == 1  # train.txt lands, test.txt missing
    assert download("is-partial", *source_arg).exit_code == 1
    (raw(data_dir, "is-corrupt") / "train.txt").write_bytes(b"x" * 3000)
    raw(data_dir, "has-part").mkdir(parents=True)
    (raw(data_dir, "has-part") / "test.txt.part").write_bytes(b"x")

    result = download("--list", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if "is-" in line or "has-" in line}
    expected = {"is-absent": "absent", "is-verified": "verified", "is-corrupt": "corrupt"}
    expected |= {"is-partial": "partial", "has-part": "partial"}
    for name, status in expected.items():
        assert rows[name].split()[-2] == status, rows[name]
    assert "4.2 kB" in rows["is-absent"]


def test_unknown_name_suggests_and_fetches_nothing(tiny, server, data_dir):
    result = download("tiny", "tinny", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "unknown dataset 'tinny'. Did you mean 'tiny'?" in result.stderr
    assert server.requests == []


def test_no_name_and_no_list(tiny):
    result = download()
    assert result.exit_code == 1
    assert "name at least one dataset to download (tiny), or use --list" in result.stderr


def run_module(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(MIRROR_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "mmlbench", "download", *args], capture_output=True, text=True, env=env, check=False
    )


def test_real_process_lists_and_rejects_a_typo(tmp_path):
    listing = run_module("--list", "--data-dir", str(tmp_path))
    assert listing.returncode == 0, listing.stderr
    gowalla = next(line for line in listing.stdout.splitlines() if "gowalla" in line)
    assert "29,858" in gowalla and "absent" in gowalla
    typo = run_module("gowala", "--data-dir", str(tmp_path))
    assert typo.returncode == 1
    assert typo.stderr.strip().startswith("error: unknown dataset 'gowala'. Did you mean 'gowalla'?")
    assert "Traceback" not in typo.stderr
