"""The weights cache: where downloaded checkpoints live, and the download itself.

The cache is `$S4S_EXPORT_CACHE`, else `~/.cache/s4s-export`. `S4S_EXPORT_OFFLINE=1` forbids
any network access. A download streams into a temporary file beside its destination, checks the
sha256 when one is known, and records the sha256 of the file in `<file>.json` beside it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import S4SError
from .fileio import atomic_write, atomic_write_text
from .progress import progress

CACHE_ENV = "S4S_EXPORT_CACHE"
OFFLINE_ENV = "S4S_EXPORT_OFFLINE"
TIMEOUT_S = 10.0  # connect and per-read stall limit: an unreachable host fails in seconds, not minutes
CHUNK = 1 << 20


class DownloadError(Exception):
    """The network or server failed (the caller says where the file can be placed by hand)."""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "s4s-export").expanduser()


def is_offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def record_path(path: Path) -> Path:
    """The JSON beside a downloaded file: {url, sha256, bytes}."""
    return path.with_name(path.name + ".json")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check_cached(path: Path) -> Path:
    """A cached file, after checking its size against the download record (when there is one)."""
    record = record_path(path)
    if record.is_file():
        expected = json.loads(record.read_text()).get("bytes")
        if expected is not None and path.stat().st_size != expected:
            raise S4SError(f"cached {path} has {path.stat().st_size} bytes but was downloaded with {expected}; "
                           f"delete it and {record.name} to download it again")
    return path


def _reason(e: Exception) -> str:
    """`Name or service not known` rather than `<urlopen error [Errno -2] ...>`; HTTP errors keep their code."""
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, Exception) else Exception(e.reason)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _chunks(response: BinaryIO) -> Iterator[bytes]:
    yield from iter(lambda: response.read(CHUNK), b"")


def download(url: str, dest: Path, sha256: str | None = None) -> Path:
    """Fetch `url` to `dest` atomically with a progress bar; verify or record its sha256.

    Raises DownloadError when the transfer fails and S4SError on a checksum mismatch; in both
    cases nothing is left at `dest`.
    """
    digest = hashlib.sha256()
    size = 0

    def write(tmp: Path) -> None:
        nonlocal size
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
                length = response.headers.get("Content-Length")
                total = math.ceil(int(length) / CHUNK) if length else None
                for block in progress(_chunks(response), f"download {dest.name} (MiB)", total):
                    out.write(block)
                    digest.update(block)
                    size += len(block)
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise DownloadError(_reason(e)) from None
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise S4SError(f"downloaded {url} has sha256 {digest.hexdigest()}, expected {sha256}; nothing was saved, "
                           f"try again or place a verified copy at {dest}")

    atomic_write(dest, write)
    record = {"url": url, "sha256": digest.hexdigest(), "bytes": size}
    atomic_write_text(record_path(dest), json.dumps(record, indent=2))
    return dest
