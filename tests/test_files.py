"""Atomic writes and the output-directory check."""
import os

import pytest

from grubench import files


def test_write_atomic_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "report.md"
    files.write_atomic(target, "old")
    files.write_atomic(target, b"new bytes")
    assert target.read_bytes() == b"new bytes"
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]


def test_interrupted_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    files.write_atomic(target, "complete")

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(target, "half")
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_check_writable_dir(tmp_path):
    assert files.check_writable_dir(tmp_path / "a" / "b").is_dir()
    plain = tmp_path / "file"
    plain.write_text("x")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        files.check_writable_dir(plain)


def test_unwritable_dir_is_reported():
    # /sys refuses new entries even to root, so this holds wherever the tests run
    with pytest.raises(PermissionError, match="cannot write to output directory /sys/"):
        files.check_writable_dir("/sys/grubench-out")


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert files.write_atomic(tmp_path / "a.json", "x").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert files.write_atomic(tmp_path / "b.json", "x").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
