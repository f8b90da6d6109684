"""The training loop (docs/learning.md): phases of epochs over teacher pairs, validation, rollback, resume.

Each epoch trains one phase ('coeffs', 'times' or 'joint') with Adam and gradient clipping on
the relaxed objective; after every parameter step the batch's z' takes a projected step, kept
only where the sample's loss went down (`relax.py`). Validation (plain distance from the true
noise, no relaxation) runs after every epoch; the best solver by validation is kept, starting from
iteration 0. A non-finite loss or gradient, or a validation distance above 10x the best, rolls
the parameters back to the best, resets Adam and halves the learning rates. The whole state is
saved atomically after every epoch, so an interrupted run loses at most one epoch.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..denoiser import Denoiser
from ..errors import S4SError
from ..fileio import atomic_write
from ..progress import progress
from ..sampler import Sampler
from ..solvers import SolverTable
from .config import SHARDS_DEFAULT, TrainConfig
from .distances import Distance
from .distributed import current
from .relax import RelaxedNoise
from .student import S4SStudent
from .teacher_cache import TeacherPairs

log = logging.getLogger("s4s_export.learn")
DIVERGENCE_FACTOR = 10.0


@dataclass
class TrainResult:
    student: S4SStudent  # holds the best parameters
    base_val: float
    init_val: float
    best_val: float
    best_epoch: int  # 0 = iteration 0 (the initialisation)
    history: list[dict]
    rollbacks: int
    relax: dict
    wall_s: float
    peak_memory: dict = field(default_factory=dict)


def peak_memory(device: torch.device) -> dict:
    """Peak memory: CUDA allocator peak on cuda; the process's max RSS on cpu (includes Python and torch)."""
    if device.type == "cuda":
        return {"bytes": int(torch.cuda.max_memory_allocated(device)), "what": "torch.cuda.max_memory_allocated"}
    return {"bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
            "what": "process max RSS (getrusage)"}


@torch.no_grad()
def validation_score(denoiser: Denoiser, solver: S4SStudent | SolverTable, pairs: TeacherPairs, distance: Distance,
                     device: torch.device, dtype: torch.dtype, batch: int = 64) -> dict[str, float]:
    """Mean distance and RMSE of a solver to the teacher on `pairs`, from their true noise.

    Batch k runs on rank k mod world (learn/distributed.py); the per-sample values are merged and
    summed in sample order, so the result does not depend on the number of ranks."""
    ranks = current()
    sampler = Sampler(denoiser, solver).to(device)
    n = len(pairs)
    dist, sq = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    chunks = torch.arange(n).split(batch)
    for k in ranks.owned(len(chunks)):
        idx = chunks[k]
        cond = None if pairs.labels is None else pairs.labels[idx].to(device)
        out = sampler(pairs.noise[idx].to(device, dtype), cond)
        y = pairs.target[idx].to(device, dtype)
        dist[idx] = distance(out, y).double().cpu()
        sq[idx] = (out.double() - y.double()).pow(2).flatten(1).mean(1).cpu()
    merged = ranks.merge(torch.stack([dist, sq]), "validation")
    return {"distance": float(merged[0].sum()) / n, "rmse": math.sqrt(float(merged[1].sum()) / n)}


class _TooManyRollbacks(Exception):
    """Training kept diverging after repeated rollbacks."""


class Trainer:
    """Learns one student for one NFE. `run()` trains (or resumes) and returns the best solver."""

    def __init__(self, denoiser: Denoiser, student: S4SStudent, base: SolverTable, cfg: TrainConfig,
                 train: TeacherPairs, val: TeacherPairs, distance: Distance, radius: float, state_path: Path,
                 fingerprint: dict, device: torch.device, dtype: torch.dtype,
                 on_epoch: Callable[[dict], None] | None = None):
        self.denoiser = denoiser.to(device)
        self.student = student.to(device)
        self.base, self.cfg, self.train, self.val = base, cfg, train, val
        self.distance, self.device, self.dtype = distance, device, dtype
        self.state_path, self.fingerprint, self.on_epoch = state_path, fingerprint, on_epoch
        self.sampler = Sampler(self.denoiser, self.student, checkpointing=cfg.checkpointing)
        self.relax = RelaxedNoise(train.noise.to(dtype), radius, cfg.relax_step)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.plan = cfg.plan()
        self.lr_scale = 1.0
        self.opt_coeffs, self.opt_times = self._optimizers()
        self.best = self._snapshot()
        self.best_val = self.base_val = self.init_val = math.nan
        self.best_epoch, self.epoch, self.rollbacks = 0, 0, 0
        self.history: list[dict] = []
        self.done = False

    # --- pieces ------------------------------------------------------------------------------

    def _optimizers(self) -> tuple[torch.optim.Adam, torch.optim.Adam | None]:
        coeffs = torch.optim.Adam(self.student.coefficient_parameters(), lr=self.cfg.lr * self.lr_scale)
        tp = self.student.time_parameters()
        return coeffs, (torch.optim.Adam(tp, lr=self.cfg.time_lr * self.lr_scale) if tp else None)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.student.state_dict().items()}

    def _batches(self, n: int) -> list[torch.Tensor]:
        perm = torch.randperm(n, generator=self.gen)
        return list(perm.split(self.cfg.batch))

    def _cond(self, pairs: TeacherPairs, idx: torch.Tensor) -> torch.Tensor | None:
        return None if pairs.labels is None else pairs.labels[idx].to(self.device)

    def validate(self, solver: S4SStudent | SolverTable) -> dict[str, float]:
        """Mean distance and RMSE to the teacher on the held-out pairs, from the true noise."""
        return validation_score(self.denoiser, solver, self.val, self.distance, self.device, self.dtype,
                                max(self.cfg.batch, 64))

    def _rollback(self, why: str) -> None:
        self.rollbacks += 1
        self.student.load_state_dict(self.best)
        self.lr_scale *= 0.5
        self.opt_coeffs, self.opt_times = self._optimizers()
        log.warning("NFE %d: %s; rolled back to the best solver (epoch %d), "
                    "learning rates x%g (rollback %d of at most %d)",
                    self.student.config.nfe, why, self.best_epoch, self.lr_scale, self.rollbacks,
                    self.cfg.max_rollbacks)
        if self.rollbacks >= self.cfg.max_rollbacks:
            raise _TooManyRollbacks

    def _set_lr(self, progress: float) -> None:
        """Learning rates at `progress` (0..1) of the run: constant, or cosine from 1 to 0.1 (`--lr-schedule`)."""
        factor = 1.0 if self.cfg.lr_schedule == "constant" else 0.1 + 0.45 * (1 + math.cos(math.pi * progress))
        for opt, lr in ((self.opt_coeffs, self.cfg.lr), (self.opt_times, self.cfg.time_lr)):
            for group in opt.param_groups if opt is not None else []:
                group["lr"] = lr * self.lr_scale * factor

    def _train_epoch(self, phase: str) -> float:
        coeffs, times = phase in ("coeffs", "joint"), phase in ("times", "joint")
        for p in self.student.parameters():
            p.requires_grad_(False)
        active = ((self.student.coefficient_parameters() if coeffs else [])
                  + (self.student.time_parameters() if times else []))
        for p in active:
            p.requires_grad_(True)
        opts = [o for o, on in ((self.opt_coeffs, coeffs), (self.opt_times, times)) if on and o is not None]
        total, count = 0.0, 0
        batches = self._batches(len(self.train))
        label = f"NFE {self.student.config.nfe} epoch {self.epoch + 1}/{len(self.plan)} ({phase})"
        for b, idx in enumerate(progress(batches, label)):
            self._set_lr((self.epoch + b / len(batches)) / len(self.plan))
            for o in opts:
                o.zero_grad(set_to_none=True)
            per, grads, zgrad = self._batch_gradients(idx, active)
            finite = (bool(torch.isfinite(per).all())
                      and all(bool(torch.isfinite(g).all()) for g in grads if g is not None))
            keep = self.relax.settle(idx, per) if self.relax.radius > 0 else None
            if not finite:
                self._rollback(f"non-finite loss or gradient in epoch {self.epoch + 1}")
                continue
            for p, g in zip(active, grads):
                p.grad = g
            torch.nn.utils.clip_grad_norm_(active, self.cfg.grad_clip)
            for o in opts:
                o.step()
            if keep is not None:
                self.relax.move(idx[keep], zgrad[keep])
            total += float(per.sum())
            count += idx.numel()
        for p in active:
            p.requires_grad_(False)
        return total / max(count, 1)

    def _batch_gradients(self, idx: torch.Tensor, active: list[torch.nn.Parameter]
                         ) -> tuple[torch.Tensor, list[torch.Tensor | None], torch.Tensor]:
        """Per-sample losses [B] (float64), the gradient of their mean for each active parameter (None where
        it gets none), and d(mean)/dz' [B, ...], the same on every rank.

        The batch is cut into `cfg.shards` parts (fewer when it is smaller); part k is computed on rank
        k mod world, the parts are merged exactly and their gradients summed in part order, so the result
        is bit-identical for any number of ranks (learn/distributed.py)."""
        ranks = current()
        shards = self.cfg.shards or SHARDS_DEFAULT[self.device.type]
        parts = [p for p in idx.tensor_split(min(shards, idx.numel())) if p.numel()]
        sizes = [p.numel() for p in active]
        pos = torch.cumsum(torch.tensor([0, *[p.numel() for p in parts]]), 0).tolist()
        per = torch.zeros(idx.numel(), dtype=torch.float64)
        zgrad = torch.zeros((idx.numel(), *self.relax.z.shape[1:]), dtype=self.relax.z.dtype)
        grads = torch.zeros(len(parts), sum(sizes), dtype=torch.float64)
        has = torch.zeros(len(active), dtype=torch.float64)
        for k in ranks.owned(len(parts)):
            part = parts[k]
            # current z' (a moved one is judged in settle)
            z = self.relax.get(part).to(self.device).requires_grad_(True)
            y = self.train.target[part].to(self.device, self.dtype)
            out = self.distance(self.sampler(z, self._cond(self.train, part)), y)
            for p in active:
                p.grad = None
            (out.sum() / idx.numel()).backward()
            per[pos[k]:pos[k + 1]] = out.detach().double().cpu()
            zgrad[pos[k]:pos[k + 1]] = z.grad.detach().cpu().to(zgrad.dtype)
            grads[k] = torch.cat([(torch.zeros(n, dtype=torch.float64) if p.grad is None
                                   else p.grad.detach().double().cpu().flatten())
                                  for p, n in zip(active, sizes)])
            has += torch.tensor([0.0 if p.grad is None else 1.0 for p in active], dtype=torch.float64)
        per, zgrad = ranks.merge(per, "training"), ranks.merge(zgrad, "training")
        grads, has = ranks.merge(grads, "training"), ranks.merge(has, "training")
        total = grads[0].clone()
        for row in grads[1:]:  # a fixed order: part 0, 1, 2, ...
            total += row
        out_grads = [None if h == 0 else g.reshape(p.shape).to(p.device, p.dtype)
                     for p, g, h in zip(active, total.split(sizes), has.tolist())]
        return per, out_grads, zgrad

    # --- state -------------------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "fingerprint": json.dumps(self.fingerprint, sort_keys=True),
            "epoch": self.epoch, "done": self.done, "student": self._snapshot(), "best": self.best,
            "best_val": self.best_val, "best_epoch": self.best_epoch, "base_val": self.base_val,
            "init_val": self.init_val,
            "lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "history": json.dumps(self.history),
            "opt_coeffs": self.opt_coeffs.state_dict(),
            "opt_times": None if self.opt_times is None else self.opt_times.state_dict(),
            "relax": self.relax.state_dict(), "rng": self.gen.get_state(),
        }

    def save(self) -> None:
        """Write the state atomically (rank 0 only: every rank holds the same state)."""
        if current().is_main:
            atomic_write(self.state_path, lambda p: torch.save(self._state(), p))

    def load(self) -> bool:
        """Restore a saved run for the same settings; False if there is none."""
        if not self.state_path.is_file():
            return False
        try:
            s = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unreadable file: torch raises many types here
            raise S4SError(f"cannot resume from {self.state_path} ({type(e).__name__}); rerun without --resume to "
                           "start over") from None
        if not isinstance(s, dict) or not isinstance(s.get("fingerprint"), str):
            raise S4SError(f"{self.state_path} is not a training state saved by `s4s-export learn`; "
                           "rerun without --resume to start over")
        if s["fingerprint"] != json.dumps(self.fingerprint, sort_keys=True):
            raise S4SError(f"the run saved in {self.state_path} used other settings (model, teacher, distance or "
                           "training options); rerun with the same options, or without --resume to start over")
        try:
            self._restore(s)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            what = f"missing {e}" if isinstance(e, KeyError) else str(e).strip().splitlines()[0][:120]
            raise S4SError(f"{self.state_path} is damaged ({type(e).__name__}: {what}); "
                           "rerun without --resume to start over") from None
        return True

    def _restore(self, s: dict) -> None:
        student = self._snapshot()
        self.student.load_state_dict(s["student"])
        try:
            best = {k: v.clone() for k, v in s["best"].items()}
            if best.keys() != student.keys() or any(best[k].shape != student[k].shape for k in best):
                raise ValueError("the best solver's parameters do not match the student")
            self.best_val, self.best_epoch = float(s["best_val"]), int(s["best_epoch"])
            self.base_val, self.init_val = float(s["base_val"]), float(s["init_val"])
            self.epoch, self.done, self.rollbacks = int(s["epoch"]), bool(s["done"]), int(s["rollbacks"])
            self.lr_scale = float(s["lr_scale"])
            history = json.loads(s["history"])
            if not isinstance(history, list):
                raise TypeError("history is not a list")
            self.opt_coeffs, self.opt_times = self._optimizers()
            self.opt_coeffs.load_state_dict(s["opt_coeffs"])
            if self.opt_times is not None and s["opt_times"] is not None:
                self.opt_times.load_state_dict(s["opt_times"])
            self.relax.load_state_dict(s["relax"])
            if self.relax.z.shape != self.relax.center.shape:
                raise ValueError("the relaxed noise does not match the training pairs")
            self.gen.set_state(s["rng"])
        except Exception:
            self.student.load_state_dict(student)
            raise
        self.best, self.history = best, history

    # --- the run -----------------------------------------------------------------------------

    def run(self, resume: bool = False) -> TrainResult:
        t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        nfe = self.student.config.nfe
        if resume and self.load():
            log.info("NFE %d: resuming after epoch %d of %d", nfe, self.epoch, len(self.plan))
        else:
            self.base_val = self.validate(self.base)["distance"]
            self.best_val = self.init_val = self.validate(self.student)["distance"]
            self.best = self._snapshot()
            log.info("NFE %d: base %s validation %.5g; iteration 0 %.5g", nfe, self.base.name, self.base_val,
                     self.init_val)
            self.save()
        try:
            while self.epoch < len(self.plan) and not self.done:
                phase = self.plan[self.epoch]
                t_epoch = time.perf_counter()
                train_loss = self._train_epoch(phase)
                val = self.validate(self.student)["distance"]
                self.epoch += 1
                if not math.isfinite(val) or val > DIVERGENCE_FACTOR * self.best_val:
                    self._rollback(f"validation distance {val:.4g} diverged (best {self.best_val:.4g})")
                elif val < self.best_val:
                    self.best_val, self.best_epoch, self.best = val, self.epoch, self._snapshot()
                record = {"epoch": self.epoch, "phase": phase, "train_loss": train_loss, "val": val,
                          "best_val": self.best_val,
                          "relax_accept_rate": self.relax.accepted / max(self.relax.proposed, 1),
                          "epoch_s": time.perf_counter() - t_epoch}
                self.history.append(record)
                log.info("NFE %d epoch %d/%d (%s): train %.5g, validation %.5g, best %.5g", nfe, self.epoch,
                         len(self.plan), phase, train_loss, val, self.best_val)
                self.save()
                if self.on_epoch is not None:
                    self.on_epoch(record)
        except _TooManyRollbacks:
            log.warning("NFE %d: stopping after %d rollbacks; keeping the best solver (epoch %d)", nfe, self.rollbacks,
                        self.best_epoch)
        self.done = True
        self.save()
        self.student.load_state_dict(self.best)
        relax = {"radius": self.relax.radius, "accepted": self.relax.accepted, "proposed": self.relax.proposed,
                 "mean_shift": float((self.relax.anchor - self.relax.center).flatten(1).norm(dim=1).mean())}
        return TrainResult(self.student, self.base_val, self.init_val, self.best_val, self.best_epoch, self.history,
                           self.rollbacks, relax, time.perf_counter() - t0, peak_memory(self.device))
