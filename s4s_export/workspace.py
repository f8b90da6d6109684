"""The workspace folder `s4s-export learn` writes and later commands read (default ./s4s-workspace).

    model.json           the model reference (name, checkpoint, random_weights, config if given) and its
                         identity (name, weights sha256, shape)
    solvers/nfe{N}.json  learned solver files
    teacher/             cached teacher pairs (learn/teacher_cache.py)
    runs/nfe{N}.pt       resumable training state; runs/nfe{N}.json the last run's report
    learn.lock           held by a running `learn` (its pid); see `Workspace.lock`
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import S4SError
from .fileio import atomic_write_text
from .modelref import ModelRef, as_model_ref, load_model

if TYPE_CHECKING:
    from .denoiser import Denoiser

DEFAULT_WORKSPACE = Path("s4s-workspace")
MODEL_FILE = "model.json"
LOCK_FILE = "learn.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _lock_holder(path: Path) -> int | None:
    """The pid written in a lock file, or None if it holds none (a crash between creating and writing it)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Workspace:
    """A workspace folder; `Workspace.open` for one that `learn` created, `Workspace.create` to make or reuse one."""

    def __init__(self, root: str | Path = DEFAULT_WORKSPACE):
        self.root = Path(root)

    @classmethod
    def open(cls, root: str | Path | None = None) -> "Workspace":
        """An existing workspace; S4SError if `root` holds none."""
        ws = cls(DEFAULT_WORKSPACE if root is None else root)
        if not (ws.root / MODEL_FILE).is_file():
            raise S4SError(f"no s4s-export workspace at {ws.root}: run `s4s-export learn` first, "
                           "or pass --workdir with the folder `learn` wrote")
        ws.model_record  # validates the file
        return ws

    @classmethod
    def create(cls, root: str | Path | None, ref: ModelRef | str, identity: dict) -> "Workspace":
        """Record the model in a new workspace, or check that an existing one is for the same model."""
        ref = as_model_ref(ref)
        ws = cls(DEFAULT_WORKSPACE if root is None else root)
        record = {"name": ref.text,
                  "checkpoint": None if ref.checkpoint is None else str(Path(ref.checkpoint).resolve()),
                  "random_weights": bool(ref.random_weights), "identity": identity}
        if ref.config is not None:
            record["config"] = str(Path(ref.config).resolve())
        path = ws.root / MODEL_FILE
        if path.is_file():
            old = ws.model_record
            if old["identity"].get("weights_sha256") != identity["weights_sha256"] or old["name"] != ref.text:
                raise S4SError(f"workspace {ws.root} holds solvers for model {old['name']!r} (weights "
                               f"{str(old['identity'].get('weights_sha256'))[:12]}), not {ref.text!r} (weights "
                               f"{identity['weights_sha256'][:12]}); pass --workdir with another folder")
            if old == record:
                return ws
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
        return ws

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold `learn.lock` (this pid) while writing here; S4SError naming the holder if a live process has it.

        A lock left by a process that no longer exists is taken over. The pid is checked on this host, so a
        workspace shared between hosts needs its learn runs started from one host."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK_FILE
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = _lock_holder(path)
                if pid is not None and pid != os.getpid() and _pid_alive(pid):
                    raise S4SError(f"workspace {self.root} is in use by another learn run (pid {pid}, {path}); "
                                   "wait for it to finish, or pass --workdir with another folder") from None
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            break
        else:
            raise S4SError(f"cannot take the lock {path}: other processes keep replacing it; "
                           "pass --workdir with another folder")
        try:
            yield
        finally:
            if _lock_holder(path) == os.getpid():
                path.unlink(missing_ok=True)

    @property
    def model_record(self) -> dict:
        path = self.root / MODEL_FILE
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or "name" not in record or "identity" not in record:
                raise ValueError("missing name or identity")
        except (OSError, ValueError) as e:
            raise S4SError(f"{path} is not a valid workspace model record ({e}); delete the workspace and run "
                           "`s4s-export learn` again") from None
        return record

    @property
    def model_name(self) -> str:
        return str(self.model_record["name"])

    @property
    def model_ref(self) -> ModelRef:
        """The recorded model reference, as `learn` was given it."""
        r = self.model_record
        return ModelRef(r["name"], r.get("checkpoint"), bool(r.get("random_weights")), r.get("config"))

    def load_model(self) -> Denoiser:
        """The recorded model, loaded as `learn` loaded it."""
        return load_model(self.model_ref)

    @property
    def teacher_dir(self) -> Path:
        return self.root / "teacher"

    def solver_path(self, nfe: int) -> Path:
        return self.root / "solvers" / f"nfe{nfe}.json"

    def state_path(self, nfe: int) -> Path:
        return self.root / "runs" / f"nfe{nfe}.pt"

    def report_path(self, nfe: int) -> Path:
        return self.root / "runs" / f"nfe{nfe}.json"

    def solver_nfes(self) -> list[int]:
        """NFEs with a learned solver file here."""
        found = (re.fullmatch(r"nfe(\d+)\.json", p.name) for p in (self.root / "solvers").glob("nfe*.json"))
        return sorted(int(m.group(1)) for m in found if m)

    def find_solver(self, nfe: int) -> Path:
        """The solver file for `nfe`; S4SError naming the NFEs that exist and how to learn this one."""
        path = self.solver_path(nfe)
        if path.is_file():
            return path
        have = self.solver_nfes()
        listing = f"it has NFE {', '.join(map(str, have))}" if have else "it has no solvers yet"
        raise S4SError(f"no learned solver for NFE {nfe} in workspace {self.root} ({listing}); learn it with "
                       f"`s4s-export learn --model {self.model_name} --nfe {nfe} --workdir {self.root}`")
