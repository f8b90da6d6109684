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
from .schedules import SPACES
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

    return {"s4s_export": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def save_solver_file(path: str | Path, solver_file: SolverFile) -> Path:
    """Write atomically."""
    return atomic_write_text(path, solver_file.to_json())


MAX_DEPTH = 32  # solver files nest a few levels (solver -> meta -> history -> ...); deeper is not one
_DICT_FIELDS = ("model", "base", "teacher", "distance", "relaxation", "seeds", "training", "validation", "versions")


def load_solver_file(path: str | Path, expect_identity: dict | None = None) -> SolverFile:
    """Read and check a solver file; with `expect_identity` (a denoiser's `identity_dict()`), refuse other models.

    Every malformed file is a one-line S4SError naming the file, the problem and the fix."""
    path = Path(path)
    if not path.is_file():
        raise S4SError(f"solver file {path} does not exist; learn one with `s4s-export learn` or name a classical "
                       "solver")
    doc = _read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise S4SError(f"{path} is not an s4s-export solver file (format {found!r}, expected {FORMAT!r}); "
                       "pass a file written by `s4s-export learn`")
    version = doc.get("version")
    if not _is_int(version) or version != VERSION:
        raise S4SError(f"{path} has solver-file version {version!r}; this s4s-export reads version {VERSION}: "
                       "re-learn it or use a matching s4s-export release")
    solver = _solver_table(path, doc.get("solver"))
    info = {k: v for k, v in doc.items() if k not in ("format", "version", "solver")}
    _check_info(path, info)
    sf = SolverFile(solver, info)
    if expect_identity is not None:
        check_model(sf, expect_identity, path)
    return sf


def _malformed(path: Path, problem: str) -> S4SError:
    return S4SError(f"{path} is a malformed solver file: {problem}; re-create it with `s4s-export learn` "
                    "(or fix that field)")


def _read_json(path: Path) -> object:
    """The parsed document: UTF-8 JSON at most MAX_DEPTH levels deep.

    NaN/Infinity literals parse (a learning history may hold a diverged epoch's NaN); the numbers sampling
    reads are checked finite in `_solver_table`."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise S4SError(f"{path} is not a solver file: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                       f"{e.start}); pass the JSON file `s4s-export learn` wrote") from None
    except OSError as e:
        raise S4SError(f"cannot read solver file {path} ({e.strerror or e}); check the path and its "
                       "permissions") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise S4SError(f"{path} is not a solver file (invalid JSON at line {e.lineno} column {e.colno}: {e.msg}); "
                       "re-create it with `s4s-export learn`") from None
    except ValueError:  # an integer literal too long to convert
        raise S4SError(f"{path} is not a valid solver file (it holds an integer with thousands of digits); "
                       "re-create it with `s4s-export learn`") from None
    except RecursionError:
        raise S4SError(f"{path} is not a solver file (JSON nested too deeply); "
                       "re-create it with `s4s-export learn`") from None
    depth, stack = 0, [(doc, 1)]
    while stack:
        value, level = stack.pop()
        depth = max(depth, level)
        if depth > MAX_DEPTH:
            raise S4SError(f"{path} is not a solver file (JSON nested more than {MAX_DEPTH} levels deep); "
                           "re-create it with `s4s-export learn`")
        if isinstance(value, dict | list):
            stack.extend((v, level + 1) for v in (value.values() if isinstance(value, dict) else value))
    return doc


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(path: Path, value: object, what: str, length: int | None = None, inf: bool = False) -> np.ndarray:
    """A JSON list of finite numbers (exactly `length` of them when given) as float64; with `inf`, +inf too
    (a flow-matching grid starts at sigma = inf: `SolverTable` checks where it may stand)."""
    if not isinstance(value, list) or not all(_is_number(v) for v in value):
        raise _malformed(path, f"{what} must be a list of numbers, got {_describe(value)}")
    if length is not None and len(value) != length:
        raise _malformed(path, f"{what} must hold {length} numbers, got {len(value)}")
    array = np.array(value, dtype=np.float64)
    if not np.all(np.isfinite(array) | (inf & (array == np.inf))):
        raise _malformed(path, f"{what} must be finite, got {[v for v in value if not np.isfinite(v)][:3]}")
    return array


def _describe(value: object) -> str:
    text = json.dumps(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _solver_table(path: Path, d: object) -> SolverTable:
    """The `solver` section, checked field by field: name, nfe, eval_sigmas [N], table [N+1][N+1], sigmas (2..N+1)."""
    if not isinstance(d, dict):
        raise _malformed(path, f"`solver` must be an object with name, nfe, sigmas, eval_sigmas and table, got "
                               f"{_describe(d)}")
    missing = [k for k in ("name", "sigmas", "eval_sigmas", "table") if k not in d]
    if missing:
        raise _malformed(path, f"`solver` lacks {', '.join(missing)}")
    if not isinstance(d["name"], str) or not d["name"]:
        raise _malformed(path, f"solver name must be a non-empty string, got {_describe(d['name'])}")
    evals = _numbers(path, d["eval_sigmas"], "eval_sigmas", inf=True)
    nfe = len(evals)
    if nfe < 1:
        raise _malformed(path, "eval_sigmas is empty; a solver needs at least 1 evaluation")
    if "nfe" in d and (not _is_int(d["nfe"]) or d["nfe"] != nfe):
        raise _malformed(path, f"nfe is {d['nfe']!r} but eval_sigmas holds {nfe} evaluations")
    table = d["table"]
    if not isinstance(table, list) or len(table) != nfe + 1:
        raise _malformed(path, f"table must be a list of {nfe + 1} rows for NFE {nfe}, got {_describe(table)}")
    rows = np.stack([_numbers(path, row, f"table row {m}", nfe + 1) for m, row in enumerate(table)])
    sigmas = _numbers(path, d["sigmas"], "sigmas", inf=True)
    if not 2 <= len(sigmas) <= nfe + 1:
        raise _malformed(path, f"sigmas holds {len(sigmas)} values; a step grid for NFE {nfe} holds 2 to {nfe + 1} "
                               "(sigma_max ... sigma_min)")
    meta = d.get("meta", {})
    if not isinstance(meta, dict):
        raise _malformed(path, f"solver meta must be an object, got {_describe(meta)}")
    space, start_scale = d.get("space", "ve"), d.get("start_scale")
    if not isinstance(space, str):
        raise _malformed(path, f"solver space must be a name ({', '.join(SPACES)}), got {_describe(space)}")
    if start_scale is not None and not (_is_number(start_scale) and np.isfinite(start_scale)):
        raise _malformed(path, f"start_scale must be a finite number, got {_describe(start_scale)}")
    try:
        return SolverTable(rows, evals, sigmas, d["name"], meta, space, start_scale)
    except S4SError as e:
        raise _malformed(path, str(e)) from None


def _check_info(path: Path, info: dict) -> None:
    """Provenance fields that are read (inspect, build, model checks) have the types they are read as."""
    for key in _DICT_FIELDS:
        if key in info and not isinstance(info[key], dict):
            raise _malformed(path, f"`{key}` must be an object, got {_describe(info[key])}")
    model = info.get("model")
    if model:
        if not isinstance(model.get("name"), str) or not isinstance(model.get("weights_sha256"), str):
            raise _malformed(path, f"model must have a string name and weights_sha256, got {_describe(model)}")
        shape = model.get("shape")
        if not isinstance(shape, list) or not shape or not all(_is_int(v) and v > 0 for v in shape):
            raise _malformed(path, f"model shape must be a list of positive integers (C, H, W), got {_describe(shape)}")
    schedule = info.get("schedule")
    if schedule is not None and not isinstance(schedule, str) and not (
            isinstance(schedule, list) and all(_is_number(v) for v in schedule)):
        raise _malformed(path, f"schedule must be a name or a list of sigmas, got {_describe(schedule)}")


def check_model(sf: SolverFile, identity: dict, path: str | Path = "solver file") -> None:
    """Refuse a solver learned for another model (name, weights sha256 or shape differ)."""
    m = sf.model
    if not m:
        return  # classical solvers carry no model
    # The name matters too: `gmm` and `gmm-cond` share weights but are different models.
    if (m.get("weights_sha256") != identity["weights_sha256"] or list(m.get("shape", [])) != list(identity["shape"])
            or m.get("name") != identity["name"]):
        raise S4SError(f"{path} was learned for model {m.get('name')!r} (weights {str(m.get('weights_sha256'))[:12]}, "
                       f"shape {m.get('shape')}), not for {identity['name']!r} (weights "
                       f"{identity['weights_sha256'][:12]}, shape {identity['shape']}); learn a solver for it with "
                       f"`s4s-export learn --model {identity['name']}`")
