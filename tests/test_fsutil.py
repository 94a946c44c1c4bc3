"""fsutil's atomic writes on a full disk: the error names the destination, and the parent folders
made for it are removed again (real ENOSPC: writes to /dev/full)."""

from __future__ import annotations

import errno

import pytest

from mmlbench.fsutil import atomic_dir, atomic_file


def _fill(path):
    with open("/dev/full", "wb") as full:
        full.write(b"x" * 65536)
        full.flush()


def test_a_full_disk_in_atomic_file_names_the_file_and_removes_the_folders_made(tmp_path):
    target = tmp_path / "a" / "b" / "table.md"
    with pytest.raises(OSError) as raised, atomic_file(target) as tmp:
        _fill(tmp)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_keeps_a_folder_that_was_there(tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(OSError) as raised, atomic_dir(tmp_path / "mine" / "processed") as tmp:
        _fill(tmp / "interactions.parquet")
    assert raised.value.filename == str(tmp_path / "mine" / "processed")
    assert [p.name for p in tmp_path.iterdir()] == ["mine"] and list((tmp_path / "mine").iterdir()) == []


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(ValueError, match="not a disk"), atomic_file(tmp_path / "new" / "x.txt"):
        raise ValueError("not a disk problem")
    assert list(tmp_path.iterdir()) == []
