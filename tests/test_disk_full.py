"""A disk that fills up during a sweep: one line naming what was being written, the sweep stops,
and nothing partial is left (no half-written run, no empty resume folder).

torch.save turns a failed write into its own RuntimeError ("unexpected pos ..."); these tests
make the failure happen inside torch's writer, on a real 300 KiB tmpfs where mounting is
allowed, and everywhere on a simulated disk that refuses Python writes once a file is started.
"""

from __future__ import annotations

import builtins
import errno
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from synthetic import make_planted

runner = CliRunner()
FAST = ["--negatives", "5", "--batch-size", "64", "--lr", "0.01", "--epochs", "3", "--device", "cpu", "-q"]


def _train(data_dir: Path, results: Path, *args: str):
    return runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(data_dir), "--results-dir",
                               str(results), "--loss", "ccl,bpr,mmcl", *FAST, *args])  # fmt: skip


def _assert_stopped_with_nothing_partial(result, results: Path) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: disk full while writing "), result.stderr
    assert "sweep" not in result.stdout and "runs failed" not in result.output  # stopped, not run by run
    runs = store.runs_dir(results)
    assert sorted(p.name for p in runs.iterdir() if p.name.startswith(".")) == [".claims"]  # no temp or resume folder
    assert list((runs / ".claims").iterdir()) == []
    assert [store.read_run(d)["status"] for d in store.iter_run_dirs(results)] in ([], [store.STATUS_COMPLETED])
    assert not any(d.name.startswith("planted-mf-mmcl") for d in runs.iterdir())  # the third run never started


class _FullAfter:
    """A file whose writes fail with ENOSPC once `room` bytes were written to it."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= size
        return self.handle.write(data)

    def __getattr__(self, name: str):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


@pytest.mark.parametrize(
    "full, every",
    [(("state.pt",), "0"), (("state.pt", "model.pt"), "60")],
    ids=["periodic-resume-write", "final-store-then-resume-flush"],
)
def test_a_full_disk_inside_torch_save_stops_the_sweep_in_one_line(planted_dir, tmp_path, monkeypatch, full, every):
    """Writes to the files named in `full` fail after 1 KiB, inside torch.save: with every 0 the first
    resume checkpoint; with 60 the final model.pt, then the resume checkpoint written at that failure."""
    real_open = builtins.open

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        filling = "w" in str(mode) and any(name in Path(str(path)).name for name in full)
        return _FullAfter(handle, 1024) if filling else handle

    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)
    result = _train(planted_dir, tmp_path / "r", "--checkpoint-every", every)
    monkeypatch.undo()
    _assert_stopped_with_nothing_partial(result, tmp_path / "r")


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 300 KiB filesystem; skipped where mounting is not allowed (the test above covers the logic)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("every", ["0", "60"])
def test_a_real_300_kib_filesystem_stops_the_sweep_in_one_line(tmp_path, tiny_disk, every):
    data_dir = tmp_path / "datasets"
    make_planted(data_dir, n_users=400, n_items=200)  # a resume checkpoint of ~0.5 MB, a model.pt of ~0.15 MB
    result = _train(data_dir, tiny_disk / "r", "--checkpoint-every", every)
    _assert_stopped_with_nothing_partial(result, tiny_disk / "r")
