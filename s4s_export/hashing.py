"""sha256 of files and bytes: the one place the package hashes what it stores or caches (torch-free base)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 20


def sha256_files(paths: Iterable[str | Path]) -> str:
    """sha256 hex digest of the files' bytes read one after another; files that do not exist are skipped."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of one file (FileNotFoundError when it is missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    return sha256_files([path])


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
