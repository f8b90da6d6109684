"""The torch-free base: one cache root (S4S_CACHE, the old S4S_EXPORT_CACHE still honoured with a note),
one sha256 helper."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from s4s_export import cachedir
from s4s_export.hashing import sha256_bytes, sha256_file, sha256_files


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(cachedir, "_noted", False)
    monkeypatch.delenv("S4S_CACHE", raising=False)
    monkeypatch.delenv("S4S_EXPORT_CACHE", raising=False)


def test_cache_root_default_and_new_name(fresh, monkeypatch, capsys, tmp_path):
    assert cachedir.cache_root() == Path("~/.cache/s4s-export").expanduser()
    monkeypatch.setenv("S4S_CACHE", str(tmp_path / "new"))
    monkeypatch.setenv("S4S_EXPORT_CACHE", str(tmp_path / "old"))
    assert cachedir.cache_root() == tmp_path / "new", "the new name wins"
    assert capsys.readouterr().err == ""


def test_old_name_still_works_with_one_note(fresh, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("S4S_EXPORT_CACHE", str(tmp_path / "old"))
    assert cachedir.cache_root() == tmp_path / "old"
    assert cachedir.cache_root() == tmp_path / "old"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "S4S_EXPORT_CACHE is deprecated; set S4S_CACHE" in err


def test_download_cache_and_engine_cache_share_the_root(fresh, monkeypatch, tmp_path):
    from s4s_export.cache import cache_dir

    monkeypatch.setenv("S4S_CACHE", str(tmp_path))
    assert cache_dir() == cachedir.cache_root() == tmp_path


def test_hashing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"graph")
    b.write_bytes(b"weights" * 300_000)  # spans several read blocks
    assert sha256_file(a) == sha256_bytes(b"graph") == hashlib.sha256(b"graph").hexdigest()
    assert sha256_files([a, b, tmp_path / "missing"]) == hashlib.sha256(b"graph" + b"weights" * 300_000).hexdigest()
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "missing")
