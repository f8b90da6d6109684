"""What `--solver` names, resolved in one place: a classical solver, a solver file, or a workspace's learned solver.

`resolve_solver` serves `eval`, `build` and `bench`: it returns the table to sample with, where it
came from (recorded in exported graphs' sidecars) and the label reports print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import S4SError, choice_error
from .hashing import sha256_file
from .solverfile import load_solver_file
from .solvers import SOLVERS, SolverTable, make_solver

if TYPE_CHECKING:
    from .denoiser import Denoiser
    from .workspace import Workspace

DEFAULT_NFE = 5  # a classical solver or a workspace's learned one when no --nfe is given


@dataclass(frozen=True)
class ResolvedSolver:
    """A solver table and where it came from."""

    table: SolverTable
    provenance: dict  # kind classical (name, schedule...), file or workspace (file, file_sha256, workdir)
    label: str  # how reports name it: the classical name or the solver file's path
    file_info: dict = field(default_factory=dict)  # a solver file's own provenance document (method, teacher, ...)


def is_classical(text: str) -> bool:
    return text in SOLVERS


def resolve_solver(text: str | None, *, denoiser: Denoiser, nfe: int | None, schedule: str | Sequence[float],
                   workspace: Workspace | None = None) -> ResolvedSolver:
    """The solver `text` names for `denoiser`.

    - a classical name: its table with `nfe` evaluations (default `DEFAULT_NFE`) on `schedule`;
    - a solver file: its table, refused when learned for another model or for another NFE than `nfe`;
    - None: the learned solver of `workspace` for `nfe` (default `DEFAULT_NFE`).
    """
    if text is None:
        if workspace is None:
            raise S4SError("no solver named: pass --solver FILE.json or a classical one (--solver dpmpp3m)")
        path = workspace.find_solver(nfe or DEFAULT_NFE)
        return _from_file(denoiser, path, nfe, {"kind": "workspace", "workdir": str(workspace.root)})
    if is_classical(text):
        info = denoiser.info
        table = make_solver(text, nfe or DEFAULT_NFE, schedule, info.sigma_min, info.sigma_max)
        return ResolvedSolver(table, {"kind": "classical", "name": text, **table.meta}, text)
    if text.endswith(".json") or Path(text).is_file():
        return _from_file(denoiser, Path(text), nfe, {"kind": "file"}, label=text)
    raise choice_error("solver", text, [*SOLVERS, "a solver file path (.json)"])


def resolve_solvers(texts: Sequence[str], nfes: Sequence[int], *, denoiser: Denoiser,
                    schedule: str | Sequence[float]) -> list[ResolvedSolver]:
    """Several solvers at several NFEs: a classical name once per NFE, a solver file once (at its own NFE)."""
    return [resolve_solver(text, denoiser=denoiser, nfe=nfe, schedule=schedule)
            for text in texts for nfe in (nfes if is_classical(text) else [None])]


def _from_file(denoiser: Denoiser, path: Path, nfe: int | None, provenance: dict,
               label: str | None = None) -> ResolvedSolver:
    sf = load_solver_file(path, expect_identity=denoiser.identity_dict())
    if nfe is not None and sf.solver.nfe != nfe:
        raise S4SError(f"solver file {path} is for NFE {sf.solver.nfe}, not --nfe {nfe}; pass --nfe {sf.solver.nfe}")
    digest = sha256_file(path)
    return ResolvedSolver(sf.solver, {**provenance, "file": str(path), "file_sha256": digest},
                          str(path) if label is None else label, sf.info)
