"""Solver files: a learned (or classical) solver as small, versioned, human-readable JSON.

The file holds the solver table and sigmas that sampling needs, plus provenance: method,
base solver, order cap, schedule, model identity, teacher, distance, seeds, validation
scores and library versions. It contains no timestamps, so the same run writes the same bytes.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .errors import S4SError
from .fileio import atomic_write_text
from .solvers import SolverTable

FORMAT = "s4s-export.solver"
VERSION = 1


@dataclass
class SolverFile:
    """A solver table with its provenance (`info`: method, model, teacher, validation, ...)."""

    solver: SolverTable
    info: dict = field(default_factory=dict)

    @property
    def model(self) -> dict:
        return self.info.get("model", {})

    def to_json(self) -> str:
        doc = {"format": FORMAT, "version": VERSION, "solver": self.solver.to_dict(), **self.info,
               "versions": self.info.get("versions") or library_versions()}
        return json.dumps(doc, indent=1) + "\n"


def library_versions() -> dict:
    import torch

    return {"s4s_export": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def save_solver_file(path: str | Path, solver_file: SolverFile) -> Path:
    """Write atomically."""
    return atomic_write_text(path, solver_file.to_json())


def load_solver_file(path: str | Path, expect_identity: dict | None = None) -> SolverFile:
    """Read and check a solver file; with `expect_identity` (a denoiser's `identity_dict()`), refuse other models."""
    path = Path(path)
    if not path.is_file():
        raise S4SError(f"solver file {path} does not exist; learn one with `s4s-export learn` or name a classical solver")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise S4SError(f"{path} is not a solver file (invalid JSON: {e.msg}); re-create it with `s4s-export learn`") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise S4SError(f"{path} is not an s4s-export solver file (format {doc.get('format') if isinstance(doc, dict) else None!r})")
    if doc.get("version") != VERSION:
        raise S4SError(f"{path} has solver-file version {doc.get('version')!r}; this s4s-export reads version {VERSION}: "
                       "re-learn it or use a matching s4s-export release")
    try:
        solver = SolverTable.from_dict(doc["solver"])
    except (KeyError, TypeError, ValueError) as e:
        raise S4SError(f"{path} has a malformed solver table ({e}); re-create it with `s4s-export learn`") from None
    info = {k: v for k, v in doc.items() if k not in ("format", "version", "solver")}
    sf = SolverFile(solver, info)
    if expect_identity is not None:
        check_model(sf, expect_identity, path)
    return sf


def check_model(sf: SolverFile, identity: dict, path: str | Path = "solver file") -> None:
    """Refuse a solver learned for another model (name, weights sha256 or shape differ)."""
    m = sf.model
    if not m:
        return  # classical solvers carry no model
    # The name matters too: `gmm` and `gmm-cond` share weights but are different models.
    if (m.get("weights_sha256") != identity["weights_sha256"] or list(m.get("shape", [])) != list(identity["shape"])
            or m.get("name") != identity["name"]):
        raise S4SError(f"{path} was learned for model {m.get('name')!r} (weights {str(m.get('weights_sha256'))[:12]}, "
                       f"shape {m.get('shape')}), not for {identity['name']!r} (weights {identity['weights_sha256'][:12]}, "
                       f"shape {identity['shape']}); learn a solver for it with `s4s-export learn --model {identity['name']}`")
