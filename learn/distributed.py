"""Learning across processes with torch.distributed (docs/learning.md, "Several processes").

A process started by torchrun (or by `s4s-export learn --nproc K`, learn/launch.py) finds RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in its environment; `Ranks.from_env()` joins
the group (Gloo on cpu, NCCL on cuda) and `current()` returns it everywhere in learn/. Without
those variables there is one rank and nothing here communicates.

Results do not depend on the number of ranks, bit for bit: every collective here is a SUM of a
tensor to which exactly one rank contributes each entry and the others contribute exact zeros
(x + 0 == x in IEEE arithmetic), so it moves numbers without rounding them. Sums of numbers that
were computed on different ranks are then formed locally, in a fixed order that does not depend
on which rank computed what (learn/trainer.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import S4SError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: rank, world size, local rank, and whether a group is joined."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    joined: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owned(self, count: int) -> range:
        """The parts 0..count-1 this rank computes: round-robin, part k on rank k mod world."""
        return range(self.rank, count, self.world)

    def device(self, name: str) -> torch.device:
        """The device for `--device name` on this rank: cuda:LOCAL_RANK for cuda."""
        if name == "cuda" and self.joined:
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device(name)

    def _collective(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (RuntimeError, OSError) as e:  # Gloo/NCCL raise RuntimeError subclasses when a peer is gone
            reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise S4SError(f"rank {self.rank}: lost contact with the other ranks during {what} ({reason}); "
                           "another rank failed or was stopped: see its message, then rerun with --resume") from None

    def merge(self, t: torch.Tensor, what: str) -> torch.Tensor:
        """Entries each filled by exactly one rank (zeros elsewhere) combined on every rank, exactly."""
        if self.world == 1:
            return t
        import torch.distributed as dist

        device = torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
        buf = t.detach().to(device).contiguous()
        self._collective(what, lambda: dist.all_reduce(buf, op=dist.ReduceOp.SUM))
        return buf.to(t.device)

    def minimum(self, value: int, what: str) -> int:
        """The smallest of every rank's `value` (so all ranks take the same branch)."""
        slots = torch.zeros(self.world, dtype=torch.float64)
        slots[self.rank] = value
        return int(self.merge(slots, what).min())

    def barrier(self, what: str) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        self._collective(what, lambda: dist.barrier())

    @classmethod
    def from_env(cls, device: str = "cpu") -> Ranks:
        """Join the group torchrun describes in the environment (once per process); one rank without it."""
        global _current
        if _current.joined or "WORLD_SIZE" not in os.environ:
            return _current
        try:
            world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
            local = int(os.environ.get("LOCAL_RANK", "0"))
        except (KeyError, ValueError):
            raise S4SError("WORLD_SIZE is set but RANK or LOCAL_RANK is missing or not a number; "
                           "start distributed learning with torchrun or `s4s-export learn --nproc K`") from None
        if world == 1:
            return _current
        import torch.distributed as dist

        backend = "nccl" if device == "cuda" else "gloo"
        if backend == "nccl" and not torch.cuda.is_available():
            raise S4SError(f"rank {rank}: --device cuda but torch sees no CUDA GPU here; use --device cpu (Gloo)")
        try:
            dist.init_process_group(backend, rank=rank, world_size=world)
        except (RuntimeError, ValueError) as e:
            raise S4SError(f"rank {rank}: cannot join the {world}-rank group ({str(e).splitlines()[0][:160]}); "
                           "check MASTER_ADDR/MASTER_PORT or the torchrun rendezvous flags") from None
        _current = cls(rank, world, local, True)
        if rank != 0:  # progress and logs from rank 0 only; errors still reach every rank's stderr
            os.environ["S4S_QUIET"] = "1"
            logging.getLogger("s4s_export.learn").setLevel(logging.ERROR)
        return _current


_current = Ranks()


def current() -> Ranks:
    """The ranks of this process (one rank unless `Ranks.from_env` joined a group)."""
    return _current
