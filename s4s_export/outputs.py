"""Checks that an output path can be written, run before any work; and the staging folders of builds.

Every check raises S4SError naming the option, the problem and the fix (torch-free).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from .errors import S4SError

STAGING_SUFFIX = ".staging"
_STAGING = re.compile(r"^\..+\.pid(\d+)\.[^.]+\.staging$")


def _check_name(path: Path, what: str) -> None:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise S4SError(f"{what} {os.fsdecode(bytes(path))!r}: the name is not valid UTF-8 (graphs, sidecars and "
                       "Triton configs record it as text); choose a UTF-8 name") from None


def _nearest_folder(path: Path, what: str) -> Path:
    """The closest existing ancestor of `path`, which must be a writable folder (missing ones get created)."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise S4SError(f"{what} {path}: {parent} is a file, not a folder; choose a path inside a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise S4SError(f"{what} {path}: the folder {parent} is not writable; choose a folder you can write to")
    return parent


def check_output_file(path: str | Path, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """`path` can become a file: a UTF-8 name with one of `suffixes`, not a folder, inside a writable folder."""
    path = Path(path)
    _check_name(path, what)
    if suffixes and path.suffix.lower() not in suffixes:
        raise S4SError(f"{what} {path}: the file must end in {' or '.join(suffixes)}; e.g. "
                       f"{path.stem or 'out'}{suffixes[0]}")
    if path.is_dir():
        raise S4SError(f"{what} {path} is an existing folder; pass a file path (or remove the folder)")
    if path.exists() and not path.is_file():
        raise S4SError(f"{what} {path} exists and is not a regular file; choose another path")
    _nearest_folder(path, what)
    return path


def check_output_folder(path: str | Path, what: str) -> Path:
    """`path` can be (or become) a writable folder: a UTF-8 name, not a file."""
    path = Path(path)
    _check_name(path, what)
    if path.exists() and not path.is_dir():
        raise S4SError(f"{what} {path} is a file, not a folder; pass a folder path (or remove the file)")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise S4SError(f"{what} {path}: the folder is not writable; choose a folder you can write to")
        return path
    _nearest_folder(path, what)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(folder: str | Path) -> list[Path]:
    """Remove the staging folders in `folder` whose build process is gone (killed mid-build); returns them."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _STAGING.match(entry.name)
        if m and entry.is_dir() and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def staging_folder(path: Path) -> Path:
    """A fresh hidden staging folder beside `path` (named with this process id), after removing stale ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path.parent)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.pid{os.getpid()}.", suffix=STAGING_SUFFIX, dir=path.parent))
