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

from ..conditioning import condition_tag, finite_range, guidance_scale, set_guidance, with_prompts
from ..denoiser import Denoiser
from ..errors import S4SError
from ..fileio import atomic_write_text
from ..modelref import ModelRef, as_model_ref, check_model, load_model
from ..noise import VALIDATION_SEED
from ..prompts import check_prompt_options
from ..solverfile import SolverFile, save_solver_file
from ..solvers import make_solver
from ..teacher import TeacherSpec
from ..workspace import DEFAULT_WORKSPACE, Workspace
from .base_select import BaseRequest, select_base
from .config import SHARDS_DEFAULT, TrainConfig
from .correction import make_student
from .distances import Distance, make_distance
from .distributed import Ranks, current
from .provenance import LearnedSolver, provenance_document
from .relax import relaxation_radius
from .student import StudentConfig, check_base
from .teacher_cache import TeacherPairs, teacher_pairs
from .trainer import Trainer, validation_score

log = logging.getLogger("s4s_export.learn")


@dataclass(frozen=True)
class LearnRequest:
    model: ModelRef | str = "demo"
    nfes: tuple[int, ...] = (5,)
    config: TrainConfig = TrainConfig()
    schedule: str | tuple[float, ...] | None = None  # base grid; None: the model's default
    teacher: TeacherSpec | None = None  # None: the model's default
    device: str = "cpu"
    workdir: str | None = None
    resume: bool = False
    teacher_batch: int = 100
    threads: int | None = None  # torch CPU threads; None: `default_cpu_threads()` on cpu, torch's default on cuda
    prompts: str | None = None  # text models: a prompts file (s4s_export/prompts.py)
    embeddings: str | None = None  # text models: precomputed embeddings (families/prompted.py)
    guidance_scale: float | None = None  # None: the model's own default


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


@dataclass(frozen=True)
class LearnRun:
    """What every NFE of one `learn` request shares: the model, workspace, teacher pairs and settings."""

    request: LearnRequest
    config: TrainConfig  # resolved
    workspace: Workspace
    denoiser: Denoiser
    teacher: TeacherSpec
    schedule: str | list[float]  # the base grid
    distance: Distance
    train: TeacherPairs
    val: TeacherPairs
    device: torch.device
    on_epoch: Callable[[dict], None] | None = None
    conditioning: dict | None = None  # guidance scale and prompts, recorded in the solver file


def learn(req: LearnRequest, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Learn a solver for every requested NFE; returns one summary row per NFE (none on ranks other than 0).

    Under torchrun every rank calls this (learn/distributed.py); rank 0 holds the workspace lock and
    alone writes the workspace, the state, solver files and reports."""
    resolve_device(req.device)
    cfg = req.config.resolved()
    ranks = Ranks.from_env(req.device)
    device = ranks.device(req.device)
    try:
        if not ranks.is_main:
            return _learn(req, cfg, device, on_epoch)
        with Workspace(DEFAULT_WORKSPACE if req.workdir is None else req.workdir).lock():
            return _learn(req, cfg, device, on_epoch)
    except S4SError as e:
        if ranks.world == 1 or str(e).startswith(f"rank {ranks.rank}: "):
            raise
        raise S4SError(f"rank {ranks.rank}: {e}") from None


def _learn(req: LearnRequest, cfg: TrainConfig, device: torch.device,
           on_epoch: Callable[[dict], None] | None) -> list[dict]:
    ranks = current()
    if cfg.checkpointing is None:
        cfg = replace(cfg, checkpointing=device.type == "cuda")
    if cfg.shards is None:
        cfg = replace(cfg, shards=SHARDS_DEFAULT[device.type])
    if ranks.world > cfg.shards:
        log.warning("%d ranks but --shards %d: ranks %d.. have no part of a training batch (pass --shards %d)",
                    ranks.world, cfg.shards, cfg.shards, ranks.world)
    if req.threads is not None or device.type == "cpu":
        torch.set_num_threads(req.threads or default_cpu_threads())
    ref = as_model_ref(req.model)
    spec = check_model(ref)
    torch.manual_seed(cfg.seed)
    check_prompt_options(spec.conditioning, req.prompts, req.embeddings, "learn")
    denoiser = finite_range(load_model(ref))
    if req.guidance_scale is not None:
        set_guidance(denoiser, req.guidance_scale)
    info = denoiser.info
    identity = denoiser.identity_dict()
    ws = Workspace.create(req.workdir, ref, identity) if ranks.is_main else None
    if ranks.is_main:  # encodes the prompts once and caches them in the workspace
        denoiser, prompts = with_prompts(denoiser, ref, req.prompts, req.embeddings, ws.teacher_dir)
    ranks.barrier("workspace setup")
    if not ranks.is_main:  # the other ranks read rank 0's cached embeddings
        ws = Workspace.open(req.workdir)
        denoiser, prompts = with_prompts(denoiser, ref, req.prompts, req.embeddings, ws.teacher_dir)
    conditioning = {"guidance_scale": guidance_scale(denoiser), **({"prompts": prompts} if prompts else {})}
    condition = condition_tag(denoiser, prompts)
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
    log.info("model %s (%s), teacher %s, distance %s, device %s", ref.text, identity["weights_sha256"][:12],
             teacher.label(), distance.name, device)
    t0 = time.perf_counter()
    train = teacher_pairs(ws.teacher_dir, denoiser, teacher, cfg.train_noise_seed, cfg.samples, req.teacher_batch,
                          device, "training", condition=condition)
    val = teacher_pairs(ws.teacher_dir, denoiser, teacher, VALIDATION_SEED, cfg.val_samples, req.teacher_batch, device,
                        "validation", held_out=True, condition=condition)
    teacher_s = time.perf_counter() - t0
    run = LearnRun(req, cfg, ws, denoiser, teacher, schedule, distance, train, val, device, on_epoch, conditioning)
    rows = []
    for nfe in req.nfes:
        learned = train_solver(run, nfe)
        if not ranks.is_main:
            continue
        path, doc = write_solver(run, learned, teacher_s)
        result = learned.result
        v = doc["validation"]
        rows.append({"nfe": nfe, "method": cfg.method, "base": doc["base"]["solver"],
                     "base_schedule": doc["base"]["schedule"],
                     "distance": distance.name, "base_val": result.base_val, "learned_val": result.best_val,
                     "ratio": v["ratio_to_base"], "best_classical": v["best_classical"],
                     "best_classical_val": v["best_classical_distance"],
                     "ratio_to_best_classical": v["ratio_to_best_classical"],
                     "rmse_ratio_to_best_classical": v["rmse_ratio_to_best_classical"],
                     "best_epoch": result.best_epoch, "rollbacks": result.rollbacks, "wall_s": result.wall_s,
                     "teacher_s": teacher_s, "peak_memory": result.peak_memory, "solver_file": str(path)})
        teacher_s = 0.0  # the pairs are shared: counted with the first NFE
    return rows


def train_solver(run: LearnRun, nfe: int) -> LearnedSolver:
    """Choose the base (`--base auto`: the best classical solver as initialised), train the student for `nfe`
    from it, and validate it, the base and the best classical solver on the held-out pairs."""
    cfg, denoiser = run.config, run.denoiser
    info = denoiser.info
    student_config = StudentConfig(nfe, cfg.order_cap, cfg.pc, cfg.learns_times, cfg.offsets)
    dtype = torch.float64 if run.teacher.is_reference else torch.float32
    selection = select_base(BaseRequest.parse(cfg.base), nfe, student_config, run.schedule, info.sigma_min,
                            info.sigma_max,
                            lambda s: validation_score(denoiser, s, run.val, run.distance, run.device, dtype,
                                                       max(cfg.batch, 64)),
                            cfg.parameterisation)
    base, schedule = selection.chosen, selection.chosen_schedule
    student, init = make_student(cfg.parameterisation, student_config, base)
    log.info("NFE %d: student initialised from %s (%s, max table error %.2g), %d coefficients",
             nfe, base.name, init.how, init.max_abs_error, student_config.num_coefficients)
    radius = relaxation_radius(student_config.num_coefficients, info.dim, cfg.radius_c)
    fingerprint = {"config": cfg.to_dict(), "nfe": nfe, "model": denoiser.identity(), "teacher": run.teacher.to_dict(),
                   "schedule": schedule, "distance": run.distance.info, "base_chosen": base.name}
    if run.conditioning and run.conditioning.get("guidance_scale") is not None:  # prompts and guidance: other data
        fingerprint["conditioning"] = run.conditioning
    trainer = Trainer(denoiser, student, base, cfg, run.train, run.val, run.distance, radius,
                      run.workspace.state_path(nfe), fingerprint, run.device, dtype, run.on_epoch)
    result = trainer.run(resume=run.request.resume)
    learned_score = trainer.validate(result.student)
    base_score = trainer.validate(base)
    return LearnedSolver(cfg, base, schedule, init, denoiser.identity_dict(), run.teacher, run.distance.info, radius,
                         student_config.num_coefficients, len(run.train), len(run.val), base_score, learned_score,
                         result, selection)


def write_solver(run: LearnRun, learned: LearnedSolver, teacher_s: float) -> tuple[Path, dict]:
    """The solver file (table and provenance) and the run report (timing, memory, history) in the workspace."""
    cfg, result, nfe = run.config, learned.result, learned.base.nfe
    doc = provenance_document(learned)
    if run.conditioning and run.conditioning.get("guidance_scale") is not None:
        doc["conditioning"] = run.conditioning
    meta = {"schedule": learned.schedule, "method": cfg.method, "base": learned.base.name, "order_cap": cfg.order_cap}
    table = result.student.solver_table(cfg.method, meta)
    path = save_solver_file(run.workspace.solver_path(nfe), SolverFile(table, doc))
    report = {"nfe": nfe, "solver_file": str(path), "wall_s": result.wall_s, "teacher_s": teacher_s,
              "wall_note": "wall_s: training and validation; teacher_s: generating teacher pairs (0 when cached)",
              "peak_memory": result.peak_memory, "device": str(run.device), "threads": torch.get_num_threads(),
              "checkpointing": cfg.checkpointing, "rollbacks": result.rollbacks, "relaxation": result.relax,
              "history": result.history, "validation": doc["validation"]}
    atomic_write_text(run.workspace.report_path(nfe), json.dumps(report, indent=1) + "\n")
    log.info("NFE %d: wrote %s (validation %.5g, base %.5g, best classical %.5g)", nfe, path,
             learned.learned_score["distance"], learned.base_score["distance"],
             learned.selection.best_classical.distance)
    return path, doc
