"""Training settings and their paper defaults (docs/learning.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..errors import S4SError, choice_error

METHODS = ("s4s-alt", "s4s", "joint")
# method -> (samples, batch, epochs). s4s: epochs in total; s4s-alt: epochs per phase (K_alt
# alternations of a time phase and a coefficient phase); joint: epochs in total (2 * K_alt).
PAPER_DEFAULTS = {"s4s": (700, 20, 10), "s4s-alt": (1400, 40, 1), "joint": (1400, 40, None)}
TRAIN_SEED_STRIDE = 10_000_000
# cpu: 2, a batch in 8 parts made one process 1.7x slower per epoch on the demo model (docs/learning.md);
# cuda: 8, one per GPU of an 8-GPU host
SHARDS_DEFAULT = {"cpu": 2, "cuda": 8}  # training noise for --seed s uses noise seeds s * stride + i


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (and so must match on --resume)."""

    method: str = "s4s-alt"
    base: str = "auto"  # or NAME[:SCHEDULE] (learn/base_select.py)
    parameterisation: str = "correction"  # or "step" (learn/correction.py; docs/learning.md, Ablations)
    order_cap: int = 3
    pc: bool = True  # docs/learning.md, Ablations
    offsets: bool | None = None  # None: on for the methods that learn times (s4s-alt, joint)
    distance: str = "auto"
    samples: int | None = None
    batch: int | None = None
    epochs: int | None = None
    alternations: int = 8
    val_samples: int = 200
    # Adam learning rates, our choice (docs/learning.md): GAS's 1e-3 and LD3's 5e-3 move the solver too
    # little in the paper's few hundred steps (demo model, NFE 5: validation 2.12 vs 1.25 with these)
    lr: float = 1e-2  # coefficients
    time_lr: float = 2e-2  # time logits and offsets
    lr_schedule: str = "constant"  # or "cosine": both rates decay to 10% over the run, per step
    grad_clip: float = 1.0
    radius_c: float = 1.0  # c_r in rho = c_r * m^(-5/2) * sqrt(dim)
    relax_step: float = 0.5  # first z' step length, as a fraction of rho
    seed: int = 0
    checkpointing: bool | None = None  # None: on for cuda (memory), off for cpu (speed)
    max_rollbacks: int = 5
    # each batch is computed in this many parts, part k on rank k mod world (learn/trainer.py): results do
    # not depend on the number of ranks, and up to `shards` ranks share a batch. None: SHARDS_DEFAULT[device]
    shards: int | None = None

    def resolved(self) -> "TrainConfig":
        """Fill the paper defaults for the method and check the values."""
        if self.method not in METHODS:
            raise choice_error("method", self.method, METHODS)
        samples, batch, epochs = PAPER_DEFAULTS[self.method]
        if self.method == "joint":
            epochs = 2 * self.alternations
        cfg = replace(self, samples=self.samples or samples, batch=self.batch or batch, epochs=self.epochs or epochs,
                      offsets=self.method != "s4s" if self.offsets is None else self.offsets)
        for name in ("samples", "batch", "epochs", "alternations", "val_samples"):
            if getattr(cfg, name) < 1:
                raise S4SError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
        if cfg.shards is not None and cfg.shards < 1:
            raise S4SError(f"--shards must be at least 1, got {cfg.shards}")
        if cfg.parameterisation not in ("step", "correction"):
            raise choice_error("param", cfg.parameterisation, ("step", "correction"))
        if cfg.lr_schedule not in ("constant", "cosine"):
            raise choice_error("lr-schedule", cfg.lr_schedule, ("constant", "cosine"))
        if cfg.offsets and cfg.method == "s4s":
            raise S4SError("--offsets learns evaluation times: use it with --method s4s-alt or joint")
        if cfg.seed < 0:
            raise S4SError(f"--seed must be >= 0, got {cfg.seed}")
        return cfg

    @property
    def learns_times(self) -> bool:
        return self.method != "s4s"

    @property
    def train_noise_seed(self) -> int:
        return self.seed * TRAIN_SEED_STRIDE

    def plan(self) -> list[str]:
        """The phase of every epoch: 'coeffs', 'times' or 'joint'."""
        if self.method == "s4s":
            return ["coeffs"] * self.epochs
        if self.method == "joint":
            return ["joint"] * self.epochs
        return (["times"] * self.epochs + ["coeffs"] * self.epochs) * self.alternations

    def to_dict(self) -> dict:
        return asdict(self)
