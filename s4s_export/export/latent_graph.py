"""The exportable module of a diffusers model (latent and/or text- or class-conditioned), around the one Sampler.

`forward(noise, <conditioning inputs>, guidance_scale [B]) -> images` (decoder inside) or latents
(`output="latent"`, --no-decode). Guidance runs inside every step as one batched network call
(families/guidance.py `guided` with a per-sample scale); the inputs a network takes follow its config
(`conditioning_inputs`, docs/export.md "Latent and text-conditioned graphs").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..contract import (
    GUIDANCE,
    IMAGES,
    LABELS,
    LATENTS,
    NEGATIVE_POOLED_EMBEDS,
    NEGATIVE_PROMPT_EMBEDS,
    NOISE,
    POOLED_EMBEDS,
    PROMPT_EMBEDS,
    TIME_IDS,
)
from ..denoiser import Denoiser
from ..errors import S4SError, choice_error
from ..families.guidance import ClassCond, Guided, TextCond
from ..families.networks import DiffusersNet
from ..noise import VALIDATION_SEED, label_set, noise_set
from ..sampler import FixedSolver, Sampler
from ..solvers import SolverTable
from .graph import to_images
from .precision import half_module, with_precision

LATENT_OUTPUTS = ("float", "uint8", "latent")
DEFAULT_TEXT_LENGTH = 77  # CLIP's tokenizer length (SD 1.x/2.x, SDXL); SD3 concatenates CLIP and T5: 333
TIME_IDS_SIZE = 6  # SDXL: original size, crop top-left, target size


@dataclass(frozen=True)
class GraphInput:
    """A conditioning input of the graph: name, dtype, shape of one sample (the batch dimension comes first)."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]


def needs_latent_graph(denoiser: Denoiser) -> bool:
    """Latent models and text-conditioned ones are built by this module (pixel EDM models by export/graph.py)."""
    return denoiser.info.latent or denoiser.info.conditioning == "text"


def conditioning_inputs(denoiser: Denoiser, text_length: int = DEFAULT_TEXT_LENGTH) -> list[GraphInput]:
    """The conditioning inputs (guidance_scale excluded) of a denoiser's graph, from its network's config."""
    info = denoiser.info
    if info.conditioning == "class":
        return [GraphInput(LABELS, torch.int64, ())]
    if info.conditioning != "text":
        return []
    net = getattr(denoiser, "net", None)
    if not isinstance(net, DiffusersNet):
        raise S4SError(f"text-conditioned model {info.name!r} is not a diffusers network; only diffusers "
                       f"UNet2DConditionModel and SD3Transformer2DModel graphs take prompt embeddings")
    cfg = net.net.config
    pooled = time_ids = 0
    if net.kind == "SD3Transformer2DModel":
        dim, pooled = cfg["joint_attention_dim"], cfg["pooled_projection_dim"]
    else:
        dim = cfg["cross_attention_dim"]
        if cfg.get("addition_embed_type") == "text_time":
            time_ids = TIME_IDS_SIZE
            pooled = cfg["projection_class_embeddings_input_dim"] - TIME_IDS_SIZE * cfg["addition_time_embed_dim"]
        elif cfg.get("addition_embed_type") is not None:
            raise S4SError(f"UNet addition_embed_type {cfg['addition_embed_type']!r} is not supported in a graph; "
                           f"supported: none, text_time (SDXL)")
    if not isinstance(dim, int):
        raise S4SError(f"{net.kind} with a per-block cross_attention_dim {dim!r} is not supported in a graph")
    out = [GraphInput(PROMPT_EMBEDS, torch.float32, (text_length, dim)),
           GraphInput(NEGATIVE_PROMPT_EMBEDS, torch.float32, (text_length, dim))]
    if pooled:
        out += [GraphInput(POOLED_EMBEDS, torch.float32, (pooled,)),
                GraphInput(NEGATIVE_POOLED_EMBEDS, torch.float32, (pooled,))]
    if time_ids:
        out.append(GraphInput(TIME_IDS, torch.float32, (time_ids,)))
    return out


class LatentSamplerGraph(nn.Module):
    """`forward(noise [B,c,h,w], **conditioning, guidance_scale [B]) -> images | latents`.

    The sampler runs in float32 (solver constants as float32 buffers). With conditioning, every
    step makes one network call on the doubled batch (conditional and unconditional halves) and
    mixes them with the per-sample scale; scale 1 gives the conditional model. The decoder
    (families/latent.py `LatentDecoder`) turns latents into images unless `output="latent"`.
    """

    def __init__(self, sampler: Sampler, inputs: list[GraphInput], decoder: nn.Module | None, output: str = "float"):
        super().__init__()
        if output not in LATENT_OUTPUTS:
            raise choice_error("output", output, LATENT_OUTPUTS)
        if output != "latent" and decoder is None and sampler.denoiser.info.latent:
            raise S4SError(f"model {sampler.denoiser.info.name!r} is latent but has no decoder; build with --no-decode")
        self.sampler = sampler
        self.inputs = list(inputs)
        self.decoder = decoder if output != "latent" else None
        self.output = output

    @property
    def guided(self) -> bool:
        return bool(self.inputs)

    @property
    def input_names(self) -> list[str]:
        return [NOISE, *(i.name for i in self.inputs), *([GUIDANCE] if self.inputs else [])]

    @property
    def output_name(self) -> str:
        return LATENTS if self.output == "latent" else IMAGES

    def condition(self, values: dict[str, torch.Tensor]) -> Guided | None:
        if not self.inputs:
            return None
        if LABELS in values:
            cond = ClassCond(values[LABELS], self.sampler.denoiser.info.num_classes)
        else:
            cond = TextCond(values[PROMPT_EMBEDS], values[NEGATIVE_PROMPT_EMBEDS], values.get(POOLED_EMBEDS),
                            values.get(NEGATIVE_POOLED_EMBEDS), values.get(TIME_IDS))
        return Guided(cond, values[GUIDANCE])

    def forward(self, noise: torch.Tensor, class_labels: torch.Tensor | None = None,
                prompt_embeds: torch.Tensor | None = None, negative_prompt_embeds: torch.Tensor | None = None,
                pooled_prompt_embeds: torch.Tensor | None = None,
                negative_pooled_prompt_embeds: torch.Tensor | None = None, add_time_ids: torch.Tensor | None = None,
                guidance_scale: torch.Tensor | None = None) -> torch.Tensor:
        given = {LABELS: class_labels, PROMPT_EMBEDS: prompt_embeds, NEGATIVE_PROMPT_EMBEDS: negative_prompt_embeds,
                 POOLED_EMBEDS: pooled_prompt_embeds, NEGATIVE_POOLED_EMBEDS: negative_pooled_prompt_embeds,
                 TIME_IDS: add_time_ids, GUIDANCE: guidance_scale}
        z = self.sampler(noise, self.condition({k: v for k, v in given.items() if v is not None}))
        if self.decoder is None:
            return z
        return to_images(self.decoder(z).float(), self.output)

    def example_inputs(self, batch: int, guidance_scale: float = 1.0, seed: int = VALIDATION_SEED,
                       null_label: bool = True) -> dict[str, torch.Tensor]:
        """Seeded inputs in graph order: noise, conditioning (standard normal embeddings; seeded labels, the
        last the null label with `null_label`), a per-sample scale."""
        info = self.sampler.denoiser.info
        out = {NOISE: noise_set(info.shape, batch, seed)}
        g = torch.Generator().manual_seed(seed + 1)
        for i in self.inputs:
            if i.name == LABELS:
                labels = label_set(info.num_classes, batch, seed)
                if null_label:
                    labels[-1] = info.num_classes
                out[LABELS] = labels
            elif i.name == TIME_IDS:  # SDXL: (height, width, top, left, height, width) in pixels
                _, h, w = info.decodes_to or info.shape
                out[TIME_IDS] = torch.tensor([[h, w, 0, 0, h, w]], dtype=torch.float32).expand(batch, -1).clone()
            else:
                out[i.name] = torch.randn((batch, *i.shape), generator=g, dtype=i.dtype)
        if self.inputs:
            out[GUIDANCE] = torch.full((batch,), guidance_scale, dtype=torch.float32)
        return out


def latent_sampler_graph(denoiser: Denoiser, solver: SolverTable, output: str = "float",
                         text_length: int = DEFAULT_TEXT_LENGTH, precision: str = "fp32",
                         decoder_precision: str = "fp32") -> LatentSamplerGraph:
    """The module to trace for a diffusers model: its conditioning inputs, its decoder, float32 solver constants;
    the network in `precision`, the decoder in `decoder_precision` (export/precision.py)."""
    decoder = getattr(denoiser, "decoder", None)
    if decoder is not None and output != "latent":
        decoder = half_module(decoder, decoder_precision)
    sampler = Sampler(with_precision(denoiser, precision), FixedSolver(solver, torch.float32))
    module = LatentSamplerGraph(sampler, conditioning_inputs(denoiser, text_length), decoder, output)
    return module.eval().requires_grad_(False)
