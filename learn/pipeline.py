"""`s4s-export learn` end to end: model -> workspace -> teacher pairs -> one trained solver file per NFE."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..denoiser import Denoiser
from ..errors import S4SError
from ..fileio import atomic_write_text
from ..models import get_model_spec, load_model
from ..noise import VALIDATION_SEED
from ..solverfile import SolverFile, library_versions, save_solver_file
from ..solvers import make_solver
from ..teacher import TeacherSpec
from ..workspace import Workspace
from .base_select import BaseRequest, Candidate, select_base
from .config import TrainConfig
from .correction import make_student
from .distances import Distance, make_distance
from .relax import relaxation_radius
from .student import StudentShape, check_base
from .teacher_cache import TeacherPairs, teacher_pairs
from .trainer import Trainer, TrainResult, validation_score

log = logging.getLogger("s4s_export.learn")


@dataclass(frozen=True)
class LearnRequest:
    model: str = "demo"
    nfes: tuple[int, ...] = (5,)
    config: TrainConfig = TrainConfig()
    schedule: str | tuple[float, ...] | None = None  # base grid; None: the model's default
    teacher: TeacherSpec | None = None  # None: the model's default
    checkpoint: str | None = None
    random_weights: bool = False
    device: str = "cpu"
    workdir: str | None = None
    resume: bool = False
    teacher_batch: int = 100
    threads: int | None = None  # torch CPU threads; None: `default_cpu_threads()` on cpu, torch's default on cuda


def resolve_device(name: str) -> torch.device:
    if name not in ("cpu", "cuda"):
        raise S4SError(f"unknown device {name!r}; choose one of: cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise S4SError("--device cuda was asked for but torch sees no CUDA GPU here; use --device cpu")
    return torch.device(name)


def default_cpu_threads() -> int:
    """Half the CPUs, at least 1. All of them (torch's default) collapses when other processes share the
    cores and OpenMP threads spin (shared 2-core dev box, OMP_WAIT_POLICY unset: one S4S-Alt epoch on the
    demo model took 105 s with 2 threads, 37 s with 1; with OMP_WAIT_POLICY=PASSIVE, as the CLI sets it,
    1 and 2 threads ran a training step equally fast)."""
    return max(1, (os.cpu_count() or 2) // 2)


def learn(req: LearnRequest, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Learn a solver for every requested NFE; returns one summary row per NFE."""
    device = resolve_device(req.device)
    cfg = req.config.resolved()
    if cfg.checkpointing is None:
        cfg = replace(cfg, checkpointing=device.type == "cuda")
    if req.threads is not None or device.type == "cpu":
        torch.set_num_threads(req.threads or default_cpu_threads())
    spec = get_model_spec(req.model)
    torch.manual_seed(cfg.seed)
    denoiser = load_model(req.model, checkpoint=req.checkpoint, random_weights=req.random_weights)
    info = denoiser.info
    identity = denoiser.identity_dict()
    ws = Workspace.create(req.workdir, req.model, identity, req.checkpoint, req.random_weights)
    teacher = req.teacher or spec.teacher
    schedule = req.schedule if req.schedule is not None else spec.schedule
    schedule = list(schedule) if isinstance(schedule, tuple) else schedule
    base_req = BaseRequest.parse(cfg.base)
    if base_req.auto and req.schedule is not None:
        raise S4SError("--schedule sets the grid of a forced base, but --base auto scores every built-in schedule; "
                       "use --base NAME --schedule ..., or --base NAME:SCHEDULE")
    for nfe in req.nfes:  # fail on a bad base/NFE before any teacher work
        if not base_req.auto:
            check_base(make_solver(base_req.solver, nfe, base_req.schedule or schedule, info.sigma_min, info.sigma_max))
    distance = make_distance(cfg.distance, info.shape, device)
    log.info("model %s (%s), teacher %s, distance %s, device %s", req.model, identity["weights_sha256"][:12],
             teacher.label(), distance.name, device)
    t0 = time.perf_counter()
    train = teacher_pairs(ws.teacher_dir, denoiser, teacher, cfg.train_noise_seed, cfg.samples, req.teacher_batch, device, "training")
    val = teacher_pairs(ws.teacher_dir, denoiser, teacher, VALIDATION_SEED, cfg.val_samples, req.teacher_batch, device, "validation")
    teacher_s = time.perf_counter() - t0
    rows = []
    for nfe in req.nfes:
        result, path, doc = _learn_one(req, cfg, ws, denoiser, teacher, schedule, distance, train, val, nfe, device, teacher_s,
                                  on_epoch)
        v = doc["validation"]
        rows.append({"nfe": nfe, "method": cfg.method, "base": doc["base"]["solver"], "base_schedule": doc["base"]["schedule"],
                     "distance": distance.name, "base_val": result.base_val, "learned_val": result.best_val,
                     "ratio": v["ratio_to_base"], "best_classical": v["best_classical"],
                     "best_classical_val": v["best_classical_distance"], "ratio_to_best_classical": v["ratio_to_best_classical"],
                     "rmse_ratio_to_best_classical": v["rmse_ratio_to_best_classical"],
                     "best_epoch": result.best_epoch, "rollbacks": result.rollbacks, "wall_s": result.wall_s,
                     "teacher_s": teacher_s, "peak_memory": result.peak_memory, "solver_file": str(path)})
        teacher_s = 0.0  # the pairs are shared: counted with the first NFE
    return rows


def _learn_one(req: LearnRequest, cfg: TrainConfig, ws: Workspace, denoiser: Denoiser, teacher: TeacherSpec,
               sched: str | list[float], distance: Distance, train: TeacherPairs, val: TeacherPairs, nfe: int,
               device: torch.device, teacher_s: float, on_epoch: Callable[[dict], None] | None) -> tuple[TrainResult, Path, dict]:
    info = denoiser.info
    shape = StudentShape(nfe, cfg.order_cap, cfg.pc, cfg.learns_times, cfg.offsets)
    dtype = torch.float64 if teacher.is_reference else torch.float32
    selection = select_base(BaseRequest.parse(cfg.base), nfe, shape, sched, info.sigma_min, info.sigma_max,
                            lambda s: validation_score(denoiser, s, val, distance, device, dtype, max(cfg.batch, 64)),
                            cfg.parameterisation)
    base, sched = selection.chosen, selection.chosen_schedule
    student, init = make_student(cfg.parameterisation, shape, base)
    log.info("NFE %d: student initialised from %s (%s, max table error %.2g), %d coefficients",
             nfe, base.name, init.how, init.max_abs_error, shape.num_coefficients)
    radius = relaxation_radius(shape.num_coefficients, info.dim, cfg.radius_c)
    fingerprint = {"config": cfg.to_dict(), "nfe": nfe, "model": denoiser.identity(), "teacher": teacher.to_dict(),
                   "schedule": sched, "distance": distance.info, "base_chosen": base.name}
    trainer = Trainer(denoiser, student, base, cfg, train, val, distance, radius, ws.state_path(nfe), fingerprint,
                      device, dtype, on_epoch)
    result = trainer.run(resume=req.resume)
    final = trainer.validate(result.student)
    base_score = trainer.validate(base)
    doc = {
        "method": cfg.method,
        "nfe": nfe,
        "base": {**init.to_dict(), "schedule": sched if isinstance(sched, str) else "explicit", "sigmas": base.sigmas.tolist(),
                 "selection": selection.to_dict()},
        "order_cap": cfg.order_cap,
        "predictor_corrector": cfg.pc,
        "schedule": "learned" if cfg.learns_times else (sched if isinstance(sched, str) else "explicit"),
        "decoupled_offsets": cfg.offsets,
        "model": denoiser.identity_dict(),
        "teacher": {**teacher.to_dict(), "label": teacher.label()},
        "distance": distance.info,
        "relaxation": {"radius_constant": cfg.radius_c, "radius": radius, "num_coefficients": shape.num_coefficients,
                       "formula": "c_r * m^(-5/2) * sqrt(dim)", "first_step_fraction": cfg.relax_step},
        "training": {k: v for k, v in cfg.to_dict().items() if k not in ("seed", "method", "base", "order_cap", "pc",
                                                                        "offsets", "distance", "radius_c", "relax_step")},
        "seeds": {"seed": cfg.seed, "train_noise_seed": cfg.train_noise_seed, "train_samples": len(train),
                  "validation_noise_seed": VALIDATION_SEED, "validation_samples": len(val), "shuffle_seed": cfg.seed},
        "validation": {"distance": distance.name, "samples": len(val), "base": base_score["distance"],
                       "learned": final["distance"], "base_rmse": base_score["rmse"], "learned_rmse": final["rmse"],
                       "iteration0": result.init_val, "best_epoch": result.best_epoch, "epochs": len(cfg.plan()),
                       **_ratios(final, base_score, selection.best_classical, selection.best_classical_rmse)},
        "parameters": student.describe(),
        "versions": library_versions(),
    }
    meta = {"schedule": doc["schedule"], "method": cfg.method, "base": base.name, "order_cap": cfg.order_cap}
    table = result.student.solver_table(cfg.method, meta)
    path = save_solver_file(ws.solver_path(nfe), SolverFile(table, doc))
    report = {"nfe": nfe, "solver_file": str(path), "wall_s": result.wall_s, "teacher_s": teacher_s,
              "wall_note": "wall_s: training and validation; teacher_s: generating teacher pairs (0 when cached)",
              "peak_memory": result.peak_memory, "device": str(device), "threads": torch.get_num_threads(),
              "checkpointing": cfg.checkpointing, "rollbacks": result.rollbacks, "relaxation": result.relax, "history": result.history,
              "validation": doc["validation"]}
    atomic_write_text(ws.report_path(nfe), json.dumps(report, indent=1) + "\n")
    log.info("NFE %d: wrote %s (validation %.5g, base %.5g, best classical %.5g)", nfe, path, final["distance"],
             base_score["distance"], selection.best_classical.distance)
    return result, path, doc


def _ratios(learned: dict, base: dict, best: Candidate, best_rmse: Candidate) -> dict:
    """The learned solver against its base and against the best classical solver (same validation pairs)."""
    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    return {"best_classical": f"{best.solver}:{best.schedule}", "best_classical_distance": best.distance,
            "best_classical_rmse_solver": f"{best_rmse.solver}:{best_rmse.schedule}", "best_classical_rmse": best_rmse.rmse,
            "ratio_to_base": ratio(learned["distance"], base["distance"]),
            "ratio_to_best_classical": ratio(learned["distance"], best.distance),
            "rmse_ratio_to_base": ratio(learned["rmse"], base["rmse"]),
            "rmse_ratio_to_best_classical": ratio(learned["rmse"], best_rmse.rmse)}
