"""Prompt embeddings from a diffusers pipeline folder's own tokenizers and text encoders.

The pipeline class named in model_index.json is built with only its tokenizer*/ and
text_encoder*/ components (safetensors weights) and its own `encode_prompt` does the encoding,
so SD 1.x/2.x (CLIPTextModel), SDXL (two encoders, pooled) and SD3 (three) encode as diffusers does.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import S4SError
from ..hashing import sha256_bytes, sha256_files
from ..prompts import Prompt
from .prompted import PromptEmbeddings

TEXT_PARTS = ("tokenizer", "text_encoder")


def _text_components(root: Path) -> dict[str, list[str]]:
    index = json.loads((root / "model_index.json").read_text()) if (root / "model_index.json").is_file() else {}
    parts = {k: v for k, v in index.items() if k.startswith(TEXT_PARTS) and isinstance(v, list) and v[0]}
    if not any(k.startswith("text_encoder") for k in parts):
        raise S4SError(f"{root} has no text encoder (model_index.json lists no text_encoder with a class); encode "
                       f"the prompts elsewhere and pass --embeddings FILE.safetensors (docs/learning.md)")
    return parts


def encoder_sha256(root: str | Path) -> str:
    """Identity of the folder's tokenizers and text encoders (their files' bytes), for the embeddings cache."""
    root = Path(root)
    files = sorted(p for k in _text_components(root) for p in (root / k).rglob("*") if p.is_file())
    return sha256_files(files)


def embeddings_key(root: str | Path, prompts: list[Prompt]) -> str:
    text = json.dumps([[p.text, p.negative] for p in prompts])
    return sha256_bytes(f"{encoder_sha256(root)}|{text}".encode())


def _load_part(root: Path, name: str, library: str, cls_name: str) -> object:
    import importlib

    try:
        module = importlib.import_module(library)
    except ImportError:
        raise S4SError(f"encoding prompts needs {library}: pip install 's4s-export[diffusers]'") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise S4SError(f"{library} has no class {cls_name!r} ({root / name}); upgrade {library}")
    if name.startswith("text_encoder"):
        if not any((root / name).glob("*.safetensors")):
            raise S4SError(f"{root / name} has no .safetensors weights (pickled weights are never loaded); save it "
                           f"with safe_serialization=True or pass --embeddings")
        return cls.from_pretrained(root / name, use_safetensors=True).eval()
    return cls.from_pretrained(root / name)


@torch.no_grad()
def encode_prompts(root: str | Path, prompts: list[Prompt],
                   latent_hw: tuple[int, int] | None = None) -> PromptEmbeddings:
    """Embeddings of `prompts` (and their negatives) with the pipeline's own `encode_prompt`."""
    from .diffusers_folder import import_diffusers

    diffusers = import_diffusers()
    root = Path(root)
    index = json.loads((root / "model_index.json").read_text())
    pipe_cls = getattr(diffusers, index.get("_class_name", ""), None)
    if pipe_cls is None or not hasattr(pipe_cls, "encode_prompt"):
        raise S4SError(f"{root}: pipeline class {index.get('_class_name')!r} has no encode_prompt in diffusers "
                       f"{diffusers.__version__}; pass --embeddings FILE.safetensors")
    parts = _text_components(root)
    components = {k: None for k, v in index.items() if not k.startswith("_") and isinstance(v, list)}
    components.update({k: _load_part(root, k, v[0], v[1]) for k, v in parts.items()})
    try:
        pipe = pipe_cls(**components)
    except TypeError as e:
        raise S4SError(f"cannot build {pipe_cls.__name__} for encoding ({e}); pass --embeddings") from None
    text = [p.text for p in prompts]
    negative = [p.negative for p in prompts]
    # no negatives given: None, as a pipeline call without negative_prompt (SDXL then zeroes them)
    kw = dict(device=torch.device("cpu"), num_images_per_prompt=1, do_classifier_free_guidance=True,
              negative_prompt=negative if any(negative) else None)
    if pipe_cls.__name__.startswith("StableDiffusion3"):
        out = pipe.encode_prompt(text, None, None, **kw)
    else:
        out = pipe.encode_prompt(text, **kw)
    if len(out) == 2:
        return PromptEmbeddings(out[0].float(), out[1].float())
    emb = PromptEmbeddings(out[0].float(), out[1].float(), out[2].float(), out[3].float())
    if "unet" in index and latent_hw is not None:  # SDXL's added time ids: original size, crop (0, 0), target size
        h, w = latent_hw
        emb.add_time_ids = torch.tensor([h, w, 0, 0, h, w], dtype=torch.float32)
    return emb
