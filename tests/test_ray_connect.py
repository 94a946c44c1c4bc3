"""`--backend ray --address`: a cluster that is not there is one line naming the address typed, soon, and Ctrl-C works.

Before: `--address 127.0.0.1:1` (nothing listening) waited 828 s in ray.init, printed a Ray
warning every few seconds, named another address and ignored SIGINT and SIGTERM meanwhile.
A port where nothing listens (refused at once) and a socket that accepts connections but never
answers (a host where no Ray head runs) stand in for the clusters that are not there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import ray
from typer.testing import CliRunner

from mmlbench.cli import app
from mmlbench.errors import MMLBenchError
from mmlbench.plan.executors import ray_connect

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
FAST = ["--negatives", "5", "--batch-size", "64", "--epochs", "1", "--device", "cpu", "-q"]
TIMEOUT = 300  # seconds, for the subprocesses: generous on a loaded machine
runner = CliRunner()


def _closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers them; `accepted` is set at the Nth."""

    def __init__(self, wait_for: int = 1) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.wait_for, self.accepted = wait_for, threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed
            while True:
                self.connections.append(self.socket.accept()[0])
                if len(self.connections) >= self.wait_for:
                    self.accepted.set()

    def close(self) -> None:
        for connection in [*self.connections, self.socket]:
            connection.close()


@pytest.fixture
def silent_server():
    server = SilentServer(wait_for=2)  # the probe's connection, then Ray's
    yield server
    server.close()


def _train(planted_dir: Path, tmp_path: Path, *args: str):
    return runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), *FAST, *args,
    ])


def _one_line(result, message: str, tmp_path: Path) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [f"error: {message}"]
    assert not (tmp_path / "r").exists()


def test_nothing_listening_at_the_address_is_one_line_naming_it(planted_dir, tmp_path, monkeypatch):
    def never(**settings):
        raise AssertionError("ray.init was called")

    monkeypatch.setattr(ray, "init", never)  # refused by the probe, before Ray is asked
    port = _closed_port()
    result = _train(planted_dir, tmp_path, "--backend", "ray", "--address", f"127.0.0.1:{port}")
    _one_line(result, f"cannot reach a Ray cluster at --address 127.0.0.1:{port}: Connection refused", tmp_path)


@pytest.mark.parametrize(("args", "message"), [
    (["--address", ""], "--address is empty: give auto or HOST:PORT, or leave it out to start a local Ray instance"),
    (["--address", " "], "--address is empty: give auto or HOST:PORT, or leave it out to start a local Ray instance"),
    (["--connect-timeout", "5"], "--connect-timeout is for joining a cluster with --address"),
    (["--address", "auto", "--connect-timeout", "0"], "--connect-timeout must be a number of seconds above 0, not 0"),
    (["--address", "auto", "--connect-timeout", "nan"], "--connect-timeout must be a number of seconds above 0, not nan"),
])
def test_an_empty_address_or_a_bad_timeout_is_refused_before_ray_starts(planted_dir, tmp_path, monkeypatch, args, message):
    monkeypatch.setattr(ray, "init", lambda **settings: pytest.fail("ray.init was called"))
    _one_line(_train(planted_dir, tmp_path, "--backend", "ray", *args), message, tmp_path)


def test_connect_timeout_belongs_to_the_ray_backend(planted_dir, tmp_path):
    _one_line(_train(planted_dir, tmp_path, "--connect-timeout", "5"), "for --backend ray only: --connect-timeout", tmp_path)


def _join_in_a_process(planted_dir: Path, tmp_path: Path, address: str, timeout: str) -> subprocess.Popen:
    """The real CLI: a waiting ray.init stays behind in its thread, so not in the tests' process."""
    command = [
        sys.executable, "-m", "mmlbench", "train", "--dataset", "planted", "--data-dir", str(planted_dir),
        "--results-dir", str(tmp_path / "r"), *FAST, "--backend", "ray", "--address", address, "--connect-timeout", timeout,
    ]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_an_address_that_never_answers_is_one_line_after_the_connect_timeout(planted_dir, tmp_path, silent_server):
    proc = _join_in_a_process(planted_dir, tmp_path, silent_server.address, "2")
    _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 1, stderr
    assert stderr.strip().splitlines() == [
        f"error: no Ray cluster answered at --address {silent_server.address} within 2 s (--connect-timeout)"
    ]  # Ray's own warnings kept off the terminal
    assert silent_server.accepted.is_set()  # Ray did try


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_wait_for_a_cluster(planted_dir, tmp_path, silent_server, signum):
    proc = _join_in_a_process(planted_dir, tmp_path, silent_server.address, "3600")
    try:
        assert silent_server.accepted.wait(TIMEOUT), "Ray never connected"  # the probe passed: ray.init is waiting
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["error: interrupted"]


def test_ray_refusing_to_join_is_one_line_naming_the_address(monkeypatch):
    def refuse(**settings):
        raise ConnectionError("Could not find any running Ray instance.\nPlease start one first.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    server = SilentServer()
    try:
        with pytest.raises(MMLBenchError) as failure, ray_connect.connected(server.address, quiet=True):
            pass
    finally:
        server.close()
    assert str(failure.value) == f"cannot join the Ray cluster at --address {server.address}: Could not find any running Ray instance."


def test_a_local_instance_that_cannot_start_is_one_line_and_sigterm_stays_ours(monkeypatch):
    def refuse(**settings):
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(15))  # what ray.init does first
        raise RuntimeError("Failed to start the GCS server.\nSee its log.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(MMLBenchError, match=r"^cannot start a local Ray instance: Failed to start the GCS server\.$"):
        with ray_connect.connected(None, quiet=True):
            pass
    assert signal.getsignal(signal.SIGTERM) is before
