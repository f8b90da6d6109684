"""The weights cache: where downloaded checkpoints live, and the download itself.

The cache is the package's one cache root (s4s_export/cachedir.py: `$S4S_CACHE`, else
`~/.cache/s4s-export`; the older `S4S_EXPORT_CACHE` still works). `S4S_EXPORT_OFFLINE=1` forbids
any network access. A download connects first (nothing is created when that fails), streams into
a temporary file beside its destination, checks the sha256 when one is known, and records the
file's sha256 and size in `<file>.json` beside it; a cache hit is checked against that record.
"""

from __future__ import annotations

import contextlib
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

from .cachedir import CACHE_ENV as CACHE_ENV  # re-exported: the variable tests and users set
from .cachedir import cache_root
from .errors import S4SError
from .fileio import atomic_write, atomic_write_text
from .hashing import CHUNK, sha256_file
from .progress import progress

OFFLINE_ENV = "S4S_EXPORT_OFFLINE"
CONNECT_TIMEOUT_S = 2.0  # an unreachable network fails at once, before anything is created
READ_TIMEOUT_S = 10.0  # per-read stall limit once connected


class DownloadError(Exception):
    """The network or server failed (the caller says where the file can be placed by hand)."""


def cache_dir() -> Path:
    return cache_root()


def is_offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def record_path(path: Path) -> Path:
    """The JSON beside a downloaded file: {url, sha256, bytes}."""
    return path.with_name(path.name + ".json")


def _read_record(record: Path, fix: str) -> dict:
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError) as e:
        raise S4SError(f"cannot read the download record {record} ({e}); {fix}") from None
    if not isinstance(data, dict):
        raise S4SError(f"the download record {record} is not a JSON object; {fix}")
    return data


def check_cached(path: Path) -> Path:
    """A cached file, checked against its download record (when there is one): size, then sha256.

    The sha256 is recomputed only when the file's mtime differs from the last verification, which
    the record keeps (`verified_mtime_ns`), so a cache hit normally costs a stat, not a hash.
    """
    record = record_path(path)
    if not record.is_file():
        return path
    fix = f"delete {path} and {record} to download it again"
    info = _read_record(record, fix)
    stat = path.stat()
    expected_size = info.get("bytes")
    if expected_size is not None and stat.st_size != expected_size:
        raise S4SError(f"cached {path} has {stat.st_size} bytes but was downloaded with {expected_size}; {fix}")
    expected = info.get("sha256")
    if expected is None or info.get("verified_mtime_ns") == stat.st_mtime_ns:
        return path
    actual = sha256_file(path)
    if actual != expected:
        raise S4SError(f"cached {path} has sha256 {actual} but was downloaded with {expected} (changed or corrupt); "
                       f"{fix}")
    with contextlib.suppress(OSError):  # a read-only cache is still verified, just again next time
        atomic_write_text(record, json.dumps({**info, "verified_mtime_ns": stat.st_mtime_ns}, indent=2))
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


def _connect(url: str) -> BinaryIO:
    """The open response for `url`: CONNECT_TIMEOUT_S to connect, then READ_TIMEOUT_S per read."""
    try:
        response = urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S)
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise DownloadError(_reason(e)) from None
    sock = getattr(getattr(response.fp, "raw", None), "_sock", None)  # http(s): the connected socket
    if sock is not None:
        sock.settimeout(READ_TIMEOUT_S)
    return response


def download(url: str, dest: Path, sha256: str | None = None) -> Path:
    """Fetch `url` to `dest` atomically with a progress bar; verify or record its sha256.

    Raises DownloadError when the transfer fails and S4SError on a checksum mismatch; in both
    cases nothing is left at `dest`, and when connecting fails nothing is created at all.
    """
    response = _connect(url)  # first: an unreachable network leaves nothing behind
    digest = hashlib.sha256()
    size = 0

    def write(tmp: Path) -> None:
        nonlocal size
        try:
            with open(tmp, "wb") as out:
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

    with response:
        atomic_write(dest, write)
    record = {"url": url, "sha256": digest.hexdigest(), "bytes": size, "verified_mtime_ns": dest.stat().st_mtime_ns}
    atomic_write_text(record_path(dest), json.dumps(record, indent=2))
    return dest
