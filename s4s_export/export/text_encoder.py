"""`build --text-encoder`: a pipeline folder's CLIP text encoder as its own small graph, and its tokenizer.

Graph: `input_ids` [B, L] int64 -> `prompt_embeds` [B, L, D] float32, the text encoder's last hidden state
(diffusers' StableDiffusionPipeline.encode_prompt without clip_skip: SD 1.x/2.x). The tokenizer is saved as
one tokenizer.json with CLIP's padding and truncation to L (`padding="max_length", truncation=True`), so
the runtime tokenizes with the `tokenizers` package alone (runtime/text_encoder.py). Both files sit beside
the sampler graph; its sidecar names them under `text_encoder` (contract.TEXT_ENCODER_KEY).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from ..contract import INPUT_IDS, PROMPT_EMBEDS, text_encoder_paths
from ..errors import S4SError
from .onnx_export import OPSET, OPSET_BF16, compact, export_model, set_metadata
from .onnx_files import move_onnx, save_onnx
from .precision import half_copy, precision_dtype

TEXT_ENCODER_CLASSES = ("CLIPTextModel",)
CHECK_PROMPTS = ["a photograph of an astronaut riding a horse", ""]
LIMIT = 1e-4  # max relative error, ORT vs PyTorch (fp32)


class TextEncoderGraph(nn.Module):
    """`forward(input_ids [B, L]) -> prompt_embeds [B, L, D]` (last hidden state, no attention mask, as SD; float32
    whatever the encoder's precision)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids).last_hidden_state.float()


def load_text_encoder(folder: Path):
    """(CLIPTextModel, fast tokenizer) from a diffusers pipeline folder's text_encoder/ and tokenizer/."""
    enc_dir, tok_dir = folder / "text_encoder", folder / "tokenizer"
    if not (enc_dir / "config.json").is_file() or not tok_dir.is_dir():
        raise S4SError(f"{folder} has no text_encoder/ (with config.json) and tokenizer/; --text-encoder needs a "
                       f"pipeline folder that has them, or feed prompt embeddings instead")
    config = json.loads((enc_dir / "config.json").read_text())
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in TEXT_ENCODER_CLASSES:
        raise S4SError(f"text encoder {arch} in {enc_dir} is not supported as a graph; supported: "
                       f"{', '.join(TEXT_ENCODER_CLASSES)} (SD 1.x/2.x); feed prompt embeddings instead")
    try:
        import transformers
    except ImportError:
        raise S4SError("--text-encoder needs the transformers package: pip install 's4s-export[diffusers]'") from None
    if not (enc_dir / "model.safetensors").is_file() and not (enc_dir / "model.safetensors.index.json").is_file():
        raise S4SError(f"{enc_dir} has no model.safetensors (pickled weights are never loaded); save it with "
                       f"save_pretrained(safe_serialization=True)")
    encoder = transformers.CLIPTextModel.from_pretrained(enc_dir, use_safetensors=True).eval().requires_grad_(False)
    tokenizer = transformers.CLIPTokenizerFast.from_pretrained(tok_dir)
    return encoder, tokenizer


def tokenizer_json(tokenizer, length: int) -> str:
    """The fast tokenizer as tokenizer.json text, padding and truncating every prompt to `length` ids."""
    backend = tokenizer.backend_tokenizer
    backend.enable_truncation(max_length=length)
    backend.enable_padding(length=length, pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    return backend.to_str()


def build_text_encoder(folder: str | Path, sampler_path: Path, length: int, batch: tuple[int, int],
                       log=lambda _: None, precision: str = "fp32") -> dict:
    """Export, verify (ORT CPU vs PyTorch on CHECK_PROMPTS) and write the text encoder graph and tokenizer
    beside `sampler_path`; returns the sidecar entry (file names, length, verification). `precision`: the
    encoder's math (export/precision.py `half_copy`: float32 normalisation; ids in, float32 embeddings out)."""
    from .verify import LIMITS, cpu_session, relative_error

    folder = Path(folder)
    encoder, tokenizer = load_text_encoder(folder)
    dim = int(encoder.config.hidden_size)
    if length > int(encoder.config.max_position_embeddings):
        raise S4SError(f"--text-length {length} exceeds the text encoder's {encoder.config.max_position_embeddings} "
                       f"positions")
    ids = torch.tensor(tokenizer(CHECK_PROMPTS, padding="max_length", max_length=length, truncation=True).input_ids,
                       dtype=torch.int64)
    full = TextEncoderGraph(encoder)
    dtype = precision_dtype(precision)
    module = full if dtype == torch.float32 else TextEncoderGraph(half_copy(encoder, dtype))
    limit = LIMIT if precision == "fp32" else LIMITS[precision]
    log(f"tracing the text encoder ({type(encoder).__name__}, {precision}, {length} tokens -> [{length}, {dim}])")
    proto = export_model(module, {INPUT_IDS: ids}, batch, OPSET_BF16 if precision == "bf16" else OPSET,
                         PROMPT_EMBEDS)
    compact(proto)
    set_metadata(proto, {"format": "s4s-export.text-encoder", "length": length, "dim": dim, "precision": precision},
                 f"{folder.name}: tokenizer ids -> prompt embeddings (s4s-export)")
    onnx_path, tok_path = text_encoder_paths(sampler_path)
    staging = sampler_path.parent / f".{onnx_path.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        staged = save_onnx(proto, staging / onnx_path.name, None)
        with torch.no_grad():
            expected = module(ids).numpy()
        try:
            session = cpu_session(staged[0])
        except Exception as e:  # onnxruntime's error classes derive from Exception only
            if precision != "bf16" or "NOT_IMPLEMENTED" not in str(e):
                raise
            session = None  # a missing kernel, not a broken graph (as export/verify.py BF16_NOT_RUN)
        if session is None:
            detail = "ORT CPU: not executed (ONNX Runtime's CPU provider has no bfloat16 kernels)"
        else:
            err = relative_error(session.run([PROMPT_EMBEDS], {INPUT_IDS: ids.numpy()})[0], expected)
            if not err <= limit:
                raise S4SError(f"text encoder verification failed: ORT vs PyTorch max relative error {err:.2e} "
                               f"(limit {limit:.0e})")
            detail = f"ORT CPU vs PyTorch on {len(CHECK_PROMPTS)} prompts: max relative error {err:.2e}"
        if module is not full:
            with torch.no_grad():
                deviation = relative_error(expected, full(ids).numpy())
            detail += f"; {precision} vs fp32 (PyTorch): max relative error {deviation:.2e}"
        (staging / tok_path.name).write_text(tokenizer_json(tokenizer, length))
        move_onnx(staged, onnx_path)
        shutil.move(staging / tok_path.name, tok_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"onnx": onnx_path.name, "tokenizer": tok_path.name, "length": length, "dim": dim,
            "input": INPUT_IDS, "output": PROMPT_EMBEDS, "pad_id": int(tokenizer.pad_token_id),
            "precision": precision, "verification": detail}
