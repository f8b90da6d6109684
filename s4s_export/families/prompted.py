"""A text-conditioned denoiser driven by prompt indices, so prompts travel through sampling like labels.

`PromptConditioned(model, embeddings)`: `cond` is int64 prompt indices [B]; row i of the embedding
table becomes a `TextCond` for the wrapped model. The table is learning data, not weights: its
buffers are not in the state dict and `identity()` is the wrapped model's.

Embeddings files (`--embeddings FILE.safetensors`, and the workspace cache) hold diffusers'
`encode_prompt` outputs, one row per prompt:
  prompt_embeds                  [P, L, D]  (required)
  negative_prompt_embeds         [P, L, D]  (required for guidance scale != 1)
  pooled_prompt_embeds           [P, Dp]    (SDXL, SD3)
  negative_pooled_prompt_embeds  [P, Dp]    (with pooled, for guidance)
  add_time_ids                   [6]        (SDXL: original H, W, crop top, left, target H, W in pixels)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ..denoiser import Denoiser
from ..errors import S4SError
from .guidance import TextCond

KEYS = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds",
        "add_time_ids")


@dataclass
class PromptEmbeddings:
    """One row per prompt (module docstring)."""

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None = None
    pooled_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None
    add_time_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.prompt_embeds.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name).float().contiguous() for f in fields(self)
                if getattr(self, f.name) is not None}

    def sha256(self) -> str:
        h = hashlib.sha256()
        for name, t in sorted(self.tensors().items()):
            h.update(f"{name}|{tuple(t.shape)}|".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def check(self, where: str) -> None:
        """Shapes agree: S4SError naming the tensor at fault."""
        e = self.prompt_embeds
        if e.ndim != 3:
            raise S4SError(f"{where}: prompt_embeds has shape {tuple(e.shape)}; it must be [prompts, tokens, dim]")
        for name in KEYS[1:4]:
            t = getattr(self, name)
            if t is not None and t.shape[0] != e.shape[0]:
                raise S4SError(f"{where}: {name} has {t.shape[0]} rows, prompt_embeds {e.shape[0]}; one row per prompt")
        n = self.negative_prompt_embeds
        if n is not None and n.shape != e.shape:
            raise S4SError(f"{where}: negative_prompt_embeds {tuple(n.shape)} differs from prompt_embeds "
                           f"{tuple(e.shape)}")
        if (self.pooled_prompt_embeds is None) != (self.negative_pooled_prompt_embeds is None) and n is not None:
            raise S4SError(f"{where}: pooled_prompt_embeds and negative_pooled_prompt_embeds come together")


def save_embeddings(path: str | Path, emb: PromptEmbeddings, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    from ..fileio import atomic_write

    atomic_write(Path(path), lambda p: save_file(emb.tensors(), str(p), metadata=metadata or {}))
    return Path(path)


def load_embeddings(path: str | Path) -> PromptEmbeddings:
    """An embeddings file (module docstring); S4SError on a missing, unreadable or malformed one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise S4SError(f"embeddings file not found: {path}; --embeddings takes a .safetensors file with "
                       f"prompt_embeds [P, L, D] (docs/learning.md)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise S4SError(f"cannot read {path} as safetensors ({e}); write it with safetensors.torch.save_file") from None
    unknown = sorted(set(tensors) - set(KEYS))
    if "prompt_embeds" not in tensors or unknown:
        raise S4SError(f"{path} has keys {sorted(tensors)}; it needs prompt_embeds and may hold only "
                       f"{', '.join(KEYS[1:])}")
    emb = PromptEmbeddings(**{k: v.float() for k, v in tensors.items()})
    emb.check(str(path))
    return emb


class PromptConditioned(Denoiser):
    """`model` with `cond` = prompt indices [B] into `embeddings` (module docstring)."""

    def __init__(self, model: Denoiser, embeddings: PromptEmbeddings):
        super().__init__()
        if model.info.conditioning != "text":
            raise S4SError(f"{model.info.name} is not text-conditioned; prompts apply to text models only")
        embeddings.check("prompt embeddings")
        self.model = model
        self.info = model.info
        self.num_prompts = len(embeddings)
        for name, t in embeddings.tensors().items():
            self.register_buffer(name, t, persistent=False)
        for name in KEYS:
            if name not in embeddings.tensors():
                setattr(self, name, None)

    @property
    def decoder(self) -> torch.nn.Module | None:
        return getattr(self.model, "decoder", None)

    def text_cond(self, cond: object) -> TextCond:
        if not isinstance(cond, torch.Tensor) or cond.dtype != torch.int64:
            raise S4SError(f"{self.info.name} with prompts takes int64 prompt indices as cond, got "
                           f"{type(cond).__name__}")
        idx = cond.reshape(-1).to(self.prompt_embeds.device)
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        time_ids = None if self.add_time_ids is None else self.add_time_ids.expand(idx.shape[0], -1)
        return TextCond(self.prompt_embeds[idx], pick(self.negative_prompt_embeds), pick(self.pooled_prompt_embeds),
                        pick(self.negative_pooled_prompt_embeds), time_ids)

    def _cast(self, c: TextCond, x: torch.Tensor) -> TextCond:
        cast = lambda t: None if t is None else t.to(x.dtype)  # noqa: E731
        return TextCond(cast(c.embeds), cast(c.negative), cast(c.pooled), cast(c.negative_pooled), cast(c.time_ids))

    def forward_scaled(self, x_in: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return self.model.forward_scaled(x_in, sigma, self._cast(self.text_cond(cond), x_in))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return self.model(x, sigma, self._cast(self.text_cond(cond), x))

    def identity(self) -> str:
        return self.model.identity()


def prompt_labels(indices: list[int], n: int, seed: int) -> torch.Tensor:
    """Prompt indices for a noise set of n samples, drawn from `indices` with a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(indices), (n,), generator=g, dtype=torch.int64)
    return torch.tensor(indices, dtype=torch.int64)[pick]
