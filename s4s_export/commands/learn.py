"""`s4s-export learn`: learn S4S / S4S-Alt solvers for a model into a workspace."""

from __future__ import annotations

import logging
import os
import sys

import typer

from ..errors import S4SError
from ..learn.config import TRAIN_SEED_STRIDE
from ..limits import SEED_MAX, SOLVER_NFE_MAX
from ..outputs import check_output_folder
from ..progress import quiet
from ..schedules import parse_schedule
from ..teacher import TeacherSpec
from ..workspace import DEFAULT_WORKSPACE
from .common import (
    CheckpointOpt,
    EmbeddingsOpt,
    GuidanceOpt,
    ModelConfigOpt,
    ModelOpt,
    PromptsOpt,
    RandomWeightsOpt,
    check_model_memory,
    console,
    model_and_prompts,
    nonnegative_number,
    parse_ints,
    positive_number,
    print_json,
    print_table,
)


class _StderrHandler(logging.StreamHandler):
    """A log handler that writes to whatever sys.stderr is when a record arrives."""

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        """Ignored: records always go to the current sys.stderr (pytest and rich swap it)."""


def _log_to_stderr() -> None:
    logger = logging.getLogger("s4s_export.learn")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def learn_cmd(
    model: ModelOpt = "demo",
    checkpoint: CheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    config: ModelConfigOpt = None,
    prompts: PromptsOpt = None,
    embeddings: EmbeddingsOpt = None,
    guidance_scale: GuidanceOpt = None,
    nfe: str = typer.Option("5", "--nfe", help="NFE, or comma-separated NFEs (one solver each), e.g. 3,4,5,6."),
    method: str = typer.Option("s4s-alt", "--method",
                               help="s4s-alt (grid and coefficients, alternating), s4s, or joint."),
    base: str = typer.Option("auto", "--base",
                             help="Classical solver to start from: auto (the best on the validation pairs over every "
                                  "solver and schedule), or NAME[:SCHEDULE] (dpmpp3m, unipc:logsnr, ...)."),
    schedule: str = typer.Option(None, "--schedule",
                                 help="Base grid: edm, logsnr, ... or sigmas (default: the model's)."),
    distance: str = typer.Option("auto", "--distance",
                                 help="auto (lpips if installed, else pseudo-huber), pseudo-huber, l2, l1, lpips."),
    samples: int = typer.Option(None, "--samples", min=1, help="Teacher pairs (default 700 for s4s, 1400 otherwise)."),
    batch: int = typer.Option(None, "--batch", min=1, help="Batch size (default 20 for s4s, 40 otherwise)."),
    epochs: int = typer.Option(None, "--epochs", min=1,
                               help="s4s/joint: epochs in total (10 / 2x alternations); "
                                    "s4s-alt: epochs per phase (1)."),
    alternations: int = typer.Option(8, "--alternations", min=1,
                                     help="S4S-Alt rounds of time phase + coefficient phase."),
    param: str = typer.Option("correction", "--param",
                              help="correction (the base solver's table on the current grid plus a learned correction, "
                                   "GS-style) or step (S4S's step-form weights fitted to the base)."),
    order_cap: int = typer.Option(3, "--order-cap", min=1,
                                  help="K: weights on the K most recent denoiser outputs per step."),
    pc: bool = typer.Option(True, "--pc/--no-pc",
                            help="Predictor-corrector variant (learned UniC-style corrector, no extra NFE)."),
    offsets: bool = typer.Option(None, "--offsets/--no-offsets",
                                 help="Learn decoupled evaluation-time offsets (default: on for s4s-alt and joint, "
                                      "which learn times)."),
    teacher: str = typer.Option(None, "--teacher", help="reference, or SOLVER:NFE[:SCHEDULE] (default: the model's)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX // TRAIN_SEED_STRIDE - 1,
                             help="Seed for training noise and shuffling."),
    val_samples: int = typer.Option(200, "--val-samples", min=1, help="Held-out validation pairs."),
    lr: float = typer.Option(1e-2, "--lr", callback=positive_number, help="Adam learning rate for coefficients."),
    time_lr: float = typer.Option(2e-2, "--time-lr", callback=positive_number,
                                  help="Adam learning rate for time logits and offsets."),
    lr_schedule: str = typer.Option("constant", "--lr-schedule",
                                    help="constant, or cosine (both rates decay to 10% over the run)."),
    radius: float = typer.Option(1.0, "--radius", min=0.0, callback=nonnegative_number,
                                 help="c_r in the relaxation radius c_r * m^(-5/2) * sqrt(dim); 0 = no relaxation."),
    checkpointing: bool = typer.Option(None, "--checkpointing/--no-checkpointing",
                                       help="Per-evaluation gradient checkpointing "
                                            "(default: on for cuda, off for cpu)."),
    threads: int = typer.Option(None, "--threads", min=1, max=os.cpu_count() or 1,
                                help="CPU threads for torch (default on cpu: half the CPUs; using all of them is much "
                                     "slower when the cores are shared)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    workdir: str = typer.Option(None, "--workdir", help="Workspace folder (default ./s4s-workspace)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last saved epoch."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    nproc: int = typer.Option(1, "--nproc", min=1,
                              help="Ranks on this host (torch.distributed; Gloo on cpu, NCCL on cuda); for several "
                                   "hosts use torchrun (docs/learning.md)."),
    shards: int = typer.Option(None, "--shards", min=1,
                               help="Parts each batch is computed in, part k on rank k mod ranks, so results do not "
                                    "depend on the number of ranks (default: 2 on cpu, 8 on cuda); more ranks than "
                                    "parts idle in training."),
) -> None:
    """Learn a few-step solver per NFE (S4S-Alt by default) and write it into the workspace."""
    ref = model_and_prompts(model, checkpoint, random_weights, config, prompts, embeddings,
                            "learn")  # before torch loads
    check_output_folder(DEFAULT_WORKSPACE if workdir is None else workdir, "--workdir")
    check_model_memory(ref, (samples or 1400) + val_samples, "--samples plus --val-samples", 4,
                       "learn from fewer teacher pairs")
    if json_out:
        quiet()
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        from ..learn.launch import launch

        if "learn" not in sys.argv:
            raise S4SError("--nproc starts `s4s-export learn` processes and needs that command line; "
                           "from Python, start the ranks with torchrun")
        launch(nproc, sys.argv[sys.argv.index("learn") + 1:])
        return
    from ..learn.config import TrainConfig
    from ..learn.pipeline import LearnRequest, learn

    _log_to_stderr()
    cfg = TrainConfig(method=method, base=base, parameterisation=param, order_cap=order_cap, pc=pc, offsets=offsets,
                      distance=distance, samples=samples, batch=batch, epochs=epochs, alternations=alternations,
                      val_samples=val_samples, lr=lr, time_lr=time_lr, lr_schedule=lr_schedule, radius_c=radius,
                      seed=seed, checkpointing=checkpointing, shards=shards)
    sched = None if schedule is None else parse_schedule(schedule)
    req = LearnRequest(model=ref, nfes=tuple(parse_ints(nfe, most=SOLVER_NFE_MAX)), config=cfg,
                       schedule=tuple(sched) if isinstance(sched, list) else sched,
                       teacher=None if teacher is None else TeacherSpec.parse(teacher), device=device, workdir=workdir,
                       resume=resume, threads=threads, prompts=prompts, embeddings=embeddings,
                       guidance_scale=guidance_scale)
    rows = learn(req)
    if not rows:  # a rank other than 0 of a distributed run: rank 0 reports
        return
    if json_out:
        print_json({"model": model, "results": rows})
        return
    r0 = rows[0]
    print_table(f"{model}: {r0['method']}; validation {r0['distance']} to the teacher, {val_samples} held-out samples",
                ["nfe", "base val", "learned val", "ratio", "vs best", "teacher", "training", "MiB"],
                [[r["nfe"], f"{r['base_val']:.4g}", f"{r['learned_val']:.4g}", f"{r['ratio']:.3f}",
                  f"{r['ratio_to_best_classical']:.3f}", f"{r['teacher_s']:.0f} s", f"{r['wall_s']:.0f} s",
                  f"{r['peak_memory']['bytes'] / 2**20:.0f}"] for r in rows])
    console.print(f"MiB: peak memory, {rows[0]['peak_memory']['what']}; teacher: generating the teacher pairs (0 when "
                  "cached); training: training and validation", highlight=False)
    console.print("ratio: learned / base; vs best: learned / the best classical solver on any schedule (same pairs)",
                  highlight=False)
    for r in rows:
        console.print(f"NFE {r['nfe']}: base {r['base']}:{r['base_schedule']}, best classical {r['best_classical']} "
                      f"({r['best_classical_val']:.4g}); {r['solver_file']}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("learn")(learn_cmd)
