"""What learn and eval sample besides noise: class labels, or prompt indices of a text model (docs/learning.md).

Text-conditioned models are wrapped as `families.prompted.PromptConditioned` with the embeddings
of `--embeddings FILE`, or of `--prompts FILE` encoded once with the model folder's own text
encoders and cached beside the teacher pairs (content-addressed: encoder files and prompts).
Training draws prompts from the training split, validation and eval from the held-out split
(`prompts.split_prompts`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import torch

from .denoiser import Denoiser
from .errors import S4SError
from .modelref import ModelRef
from .noise import label_set
from .prompts import read_prompts, split_prompts

log = logging.getLogger("s4s_export.learn")


def set_guidance(denoiser: Denoiser, scale: float) -> None:
    """The classifier-free guidance scale the denoiser applies inside each call (diffusers and compvis models)."""
    model = getattr(denoiser, "model", denoiser) if not hasattr(denoiser, "guidance_scale") else denoiser
    if not hasattr(model, "guidance_scale"):
        raise S4SError(f"--guidance-scale applies to diffusers: and compvis: models, not {denoiser.info.name}")
    if denoiser.info.conditioning == "none" and scale != 1.0:
        raise S4SError(f"{denoiser.info.name} is unconditional: guidance does not apply; leave out --guidance-scale")
    model.guidance_scale = float(scale)


def finite_range(denoiser: Denoiser) -> Denoiser:
    """A flow model (sigma_max = inf) with sigma_max set to its largest finite training sigma, for learn and eval.

    Their solvers start from sigma_max * noise in the VE state: for FlowMatch schedules with shift s
    and T training steps, sigma = s t / (1 - t) at t = (T - 1) / T is s (T - 1) = sigma_min (T - 1)^2
    (families/flow.py), where x_t differs from pure noise by x0 / (1 + sigma_max) (0.03% for SD3).
    Tables from sigma = inf itself are the model-space tables of docs/solvers.md (not learned yet).
    """
    info = denoiser.info
    if math.isfinite(info.sigma_max):
        return denoiser
    steps = int(getattr(denoiser, "num_train_timesteps", 1000))
    cap = info.sigma_min * (steps - 1) ** 2
    log.info("flow model: sampling from sigma_max = %.6g (t = %d/%d) instead of inf", cap, steps - 1, steps)
    denoiser.info = dataclasses.replace(info, sigma_max=cap)
    return denoiser


def guidance_scale(denoiser: Denoiser) -> float | None:
    model = denoiser if hasattr(denoiser, "guidance_scale") else getattr(denoiser, "model", None)
    return None if model is None or not hasattr(model, "guidance_scale") else float(model.guidance_scale)


def with_prompts(denoiser: Denoiser, ref: ModelRef, prompts: str | None, embeddings: str | None,
                 cache_dir: Path | None) -> tuple[Denoiser, dict]:
    """A text model wrapped with its prompt embeddings, and what to record about them; others as they are."""
    if denoiser.info.conditioning != "text":
        return denoiser, {}
    from .families.prompted import PromptConditioned, load_embeddings, save_embeddings
    from .prompts import check_prompt_count

    if embeddings:
        emb = load_embeddings(embeddings)
        source = {"embeddings": str(embeddings)}
    else:
        if ref.kind != "diffusers":
            raise S4SError(f"--prompts encodes with a diffusers pipeline folder's text encoders; for {ref.text} pass "
                           f"--embeddings FILE.safetensors")
        from .families.text_encoder import embeddings_key, encode_prompts

        items = read_prompts(prompts)
        key = embeddings_key(ref.target, items)
        path = None if cache_dir is None else Path(cache_dir) / f"prompts-{key[:16]}.safetensors"
        if path is not None and path.is_file():
            emb = load_embeddings(path)
            log.info("prompt embeddings: %d prompts from the cache %s", len(emb), path.name)
        else:
            log.info("prompt embeddings: encoding %d prompts with %s's text encoder", len(items), ref.target)
            c, h, w = denoiser.info.decodes_to or denoiser.info.shape
            emb = encode_prompts(ref.target, items, (h, w))
            if path is not None:
                save_embeddings(path, emb, {"format": "s4s-export.prompt-embeddings", "key": key})
        source = {"prompts": str(prompts), "prompts_sha256": key}
    check_prompt_count(len(emb), "the prompt embeddings")
    train, held = split_prompts(len(emb))
    record = {**source, "count": len(emb), "held_out": held, "embeddings_sha256": emb.sha256()}
    return PromptConditioned(denoiser, emb), record


def condition_labels(denoiser: Denoiser, n: int, seed: int, held_out: bool) -> torch.Tensor | None:
    """Class labels, or prompt indices from the training or held-out split, for a noise set of n samples."""
    num_prompts = getattr(denoiser, "num_prompts", None)
    if num_prompts is None:
        return label_set(denoiser.info.num_classes, n, seed)
    from .families.prompted import prompt_labels

    train, held = split_prompts(num_prompts)
    return prompt_labels(held if held_out else train, n, seed)


def condition_tag(denoiser: Denoiser, record: dict) -> str:
    """What besides the weights decides a teacher output: embeddings and guidance ("" when neither applies)."""
    parts = []
    if record.get("embeddings_sha256"):
        parts.append(record["embeddings_sha256"][:12])
    g = guidance_scale(denoiser)
    if g is not None and denoiser.info.conditioning != "none":
        parts.append(f"g{g:g}")
    return "-".join(parts)
