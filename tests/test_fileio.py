"""Atomic writes: complete file or the old one, ordinary permissions, no temporary left behind."""

import os

import pytest

from s4s_export.fileio import atomic_write, atomic_write_text


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "a" / "f.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~_umask()
    assert [q.name for q in p.parent.iterdir()] == ["f.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(p, broken)
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.txt"]


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m
