"""`build --text-encoder`: a pipeline folder's text encoder(s) as one small graph, and its tokenizer(s).

Graph: one int64 ids input per tokenizer (contract.INPUT_IDS_INPUTS: `input_ids`, `input_ids_2`, `input_ids_3`)
-> the sampler graph's text inputs, as diffusers' `encode_prompt` computes them (default clip_skip):

- SD 1.x/2.x (StableDiffusionPipeline): `prompt_embeds` = the CLIPTextModel's last hidden state.
- SDXL (StableDiffusionXLPipeline): `prompt_embeds` = the penultimate hidden states of CLIPTextModel and
  CLIPTextModelWithProjection concatenated; `pooled_prompt_embeds` = the projected pooled output of the first
  encoder with a projection (text_encoder_2).
- SD3 (StableDiffusion3Pipeline): the two CLIPs' penultimate hidden states concatenated, padded (or cut) to
  T5's width, then T5's last hidden state appended along the sequence (zeros when the folder has no
  text_encoder_3); `pooled_prompt_embeds` = both CLIPs' projected pooled outputs concatenated. The sampler
  graph's L is CLIP's 77 plus T5's max_sequence_length (diffusers' default 256: `--text-length 333`).

The negative prompt goes through the same graph. Each tokenizer is saved as a tokenizer.json with its own
padding and truncation (`padding="max_length", truncation=True`), so the runtime tokenizes with the
`tokenizers` package alone (runtime/text_encoder.py). All files sit beside the sampler graph; its sidecar
names them under `text_encoder` (contract.TEXT_ENCODER_KEY; `text_encoder_entry` below).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..contract import (
    INPUT_IDS_INPUTS,
    POOLED_EMBEDS,
    PROMPT_EMBEDS,
    TEXT_DIM_KEY,
    TEXT_ENCODER_FILE_KEY,
    TEXT_LENGTH_KEY,
    TEXT_TOKENIZERS_KEY,
    text_encoder_paths,
)
from ..errors import S4SError
from .onnx_export import OPSET, OPSET_BF16, compact, export_model, set_metadata
from .onnx_files import move_onnx, save_onnx
from .precision import half_copy, precision_dtype

CLIP, SDXL, SD3 = "clip", "sdxl", "sd3"  # how the encoders' outputs combine (module docstring)
SLOTS = ("text_encoder", "text_encoder_2", "text_encoder_3")  # a pipeline's encoder folders; tokenizer_N beside
ENCODER_CLASSES = {  # per kind, the transformers classes each slot may hold
    CLIP: ({"CLIPTextModel"},),
    SDXL: ({"CLIPTextModel", "CLIPTextModelWithProjection"}, {"CLIPTextModelWithProjection"}),
    SD3: ({"CLIPTextModelWithProjection"}, {"CLIPTextModelWithProjection"}, {"T5EncoderModel"}),
}
TOKENIZER_CLASSES = {"CLIPTextModel": "CLIPTokenizerFast", "CLIPTextModelWithProjection": "CLIPTokenizerFast",
                     "T5EncoderModel": "T5TokenizerFast"}
REQUIRED = {CLIP: (0,), SDXL: (1,), SD3: (0, 1)}  # slots that must be present (SDXL's refiner has only the 2nd)
T5_MAX_LENGTH = 512  # diffusers' StableDiffusion3Pipeline.check_inputs limit on max_sequence_length
CHECK_PROMPTS = ["a photograph of an astronaut riding a horse", ""]
LIMIT = 1e-4  # max relative error, ORT vs PyTorch (fp32)


@dataclass
class TextPart:
    """One tokenizer and its encoder (a pipeline's `tokenizer_N/` and `text_encoder_N/`)."""

    slot: str
    tokenizer: object
    encoder: nn.Module
    length: int  # ids per prompt

    @property
    def input(self) -> str:
        return INPUT_IDS_INPUTS[SLOTS.index(self.slot)]


class TextEncoderGraph(nn.Module):
    """`forward(input_ids, input_ids_2, input_ids_3)` (those of `parts`) -> prompt_embeds [B, L, D], plus
    pooled_prompt_embeds [B, P] for SDXL and SD3 (module docstring), float32 whatever the encoders' precision."""

    def __init__(self, kind: str, parts: list[TextPart], t5_zeros: tuple[int, int] | None = None):
        super().__init__()
        self.kind, self.t5_zeros = kind, t5_zeros
        self.slots = [p.slot for p in parts]
        self.encoders = nn.ModuleList([p.encoder for p in parts])

    @property
    def outputs(self) -> tuple[str, ...]:
        return (PROMPT_EMBEDS,) if self.kind == CLIP else (PROMPT_EMBEDS, POOLED_EMBEDS)

    def forward(self, input_ids: torch.Tensor | None = None, input_ids_2: torch.Tensor | None = None,
                input_ids_3: torch.Tensor | None = None):
        ids = dict(zip(SLOTS, (input_ids, input_ids_2, input_ids_3), strict=True))
        if self.kind == CLIP:
            return self.encoders[0](ids[SLOTS[0]]).last_hidden_state.float()
        clips = [(e(ids[s], output_hidden_states=True), e) for s, e in zip(self.slots, self.encoders, strict=True)
                 if s != SLOTS[2]]
        embeds = torch.cat([out.hidden_states[-2].float() for out, _ in clips], dim=-1)
        projected = [out.text_embeds.float() for out, e in clips if hasattr(e, "text_projection")]
        if self.kind == SDXL:
            return embeds, projected[0]
        if self.t5_zeros is None:
            t5 = self.encoders[-1](ids[SLOTS[2]]).last_hidden_state.float()
        else:
            t5 = embeds.new_zeros(embeds.shape[0], *self.t5_zeros)
        embeds = F.pad(embeds, (0, t5.shape[-1] - embeds.shape[-1]))
        return torch.cat([embeds, t5], dim=-2), torch.cat(projected, dim=-1)


def _pipeline_index(folder: Path) -> dict:
    path = folder / "model_index.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise S4SError(f"{path} is not valid JSON ({e}); save the pipeline again with save_pretrained") from None


def pipeline_kind(index: dict) -> str:
    """CLIP, SDXL or SD3, from the components a pipeline's model_index.json lists."""
    if "text_encoder_3" in index:
        return SD3
    return SDXL if "text_encoder_2" in index else CLIP


def _load_part(folder: Path, slot: str, allowed: set[str], transformers) -> tuple[nn.Module, object] | None:
    enc_dir, tok_dir = folder / slot, folder / slot.replace("text_encoder", "tokenizer")
    if not (enc_dir / "config.json").is_file() or not tok_dir.is_dir():
        return None
    config = json.loads((enc_dir / "config.json").read_text())
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in allowed:
        raise S4SError(f"text encoder {arch} in {enc_dir} is not supported as a graph here; supported: "
                       f"{', '.join(sorted(allowed))}; feed prompt embeddings instead")
    if not (enc_dir / "model.safetensors").is_file() and not (enc_dir / "model.safetensors.index.json").is_file():
        raise S4SError(f"{enc_dir} has no model.safetensors (pickled weights are never loaded); save it with "
                       f"save_pretrained(safe_serialization=True)")
    encoder = getattr(transformers, arch).from_pretrained(enc_dir, use_safetensors=True).eval().requires_grad_(False)
    return encoder, getattr(transformers, TOKENIZER_CLASSES[arch]).from_pretrained(tok_dir)


def load_text_parts(folder: Path, length: int) -> tuple[str, list[TextPart], tuple[int, int] | None]:
    """(kind, the folder's tokenizers and encoders, SD3's T5 zeros shape when it has no T5) for a sampler graph
    taking `length` tokens per prompt."""
    index = _pipeline_index(folder)
    kind = pipeline_kind(index)
    try:
        import transformers
    except ImportError:
        raise S4SError("--text-encoder needs the transformers package: pip install 's4s-export[diffusers]'") from None
    loaded = [_load_part(folder, slot, allowed, transformers)
              for slot, allowed in zip(SLOTS, ENCODER_CLASSES[kind], strict=False)]
    missing = [SLOTS[i] for i in REQUIRED[kind] if loaded[i] is None]
    if missing:
        raise S4SError(f"{folder} has no {', '.join(missing)}/ (with config.json) and matching tokenizer folder; "
                       f"--text-encoder needs a pipeline folder that has them, or feed prompt embeddings instead")
    parts, t5_zeros = [], None
    for slot, part in zip(SLOTS, loaded, strict=False):
        if part is None:
            continue
        encoder, tokenizer = part
        ids = length
        if kind == SD3:  # diffusers: CLIP takes tokenizer.model_max_length ids, T5 the rest of the sequence
            clip_length = sd3_clip_length(int(loaded[0][1].model_max_length), length)
            ids = length - clip_length if slot == SLOTS[2] else clip_length
        positions = getattr(encoder.config, "max_position_embeddings", None)
        if positions is not None and ids > int(positions):
            raise S4SError(f"{ids} tokens per prompt exceed {slot}'s {positions} positions; lower --text-length")
        parts.append(TextPart(slot, tokenizer, encoder, ids))
    if kind == SD3 and loaded[2] is None:  # diffusers' _get_t5_prompt_embeds without text_encoder_3: zeros
        transformer = folder / "transformer" / "config.json"
        if not transformer.is_file():
            raise S4SError(f"{folder} has no text_encoder_3 and no transformer/config.json to size T5's zeros by; "
                           f"save the whole pipeline")
        dim = json.loads(transformer.read_text())["joint_attention_dim"]
        t5_zeros = (length - parts[0].length, int(dim))
    return kind, parts, t5_zeros


def sd3_clip_length(model_max_length: int, length: int) -> int:
    """SD3's CLIP ids per prompt (its tokenizer's model_max_length), after checking that `length` leaves T5
    1 to T5_MAX_LENGTH tokens."""
    t5 = length - model_max_length
    if not 1 <= t5 <= T5_MAX_LENGTH:
        raise S4SError(f"SD3 prompt embeddings are {model_max_length} CLIP tokens followed by T5's "
                       f"max_sequence_length (1 to {T5_MAX_LENGTH}); --text-length {length} leaves {t5}: pass "
                       f"--text-length {model_max_length + 256} (diffusers' default)")
    return model_max_length


def check_text_length(folder: str | Path, length: int) -> None:
    """Before the sampler is exported: SD3's `length` must leave room for T5 (from tokenizer/'s config alone)."""
    folder = Path(folder)
    if pipeline_kind(_pipeline_index(folder)) == SD3:
        config = folder / "tokenizer" / "tokenizer_config.json"
        try:
            max_length = json.loads(config.read_text()).get("model_max_length", 77) if config.is_file() else 77
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise S4SError(f"{config} is not valid JSON ({e}); save the pipeline again") from None
        sd3_clip_length(int(max_length), length)


def tokenizer_json(tokenizer, length: int) -> str:
    """The fast tokenizer as tokenizer.json text, padding and truncating every prompt to `length` ids."""
    backend = tokenizer.backend_tokenizer
    backend.enable_truncation(max_length=length)
    backend.enable_padding(length=length, pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    return backend.to_str()


def token_ids(parts: list[TextPart], prompts: list[str]) -> dict[str, torch.Tensor]:
    """{graph input: ids [B, L]} of `prompts`, tokenized as diffusers' pipelines do."""
    return {p.input: torch.tensor(p.tokenizer(prompts, padding="max_length", max_length=p.length, truncation=True,
                                              add_special_tokens=True).input_ids, dtype=torch.int64)
            for p in parts}


def text_encoder_files(entry: dict) -> list[str]:
    """The files a sidecar's text_encoder entry names: the graph (and its external weights), each tokenizer.json."""
    data = [entry["onnx_data"]] if "onnx_data" in entry else []
    return [entry[TEXT_ENCODER_FILE_KEY], *data, *(t["file"] for t in entry[TEXT_TOKENIZERS_KEY])]


def build_text_encoder(folder: str | Path, sampler_path: Path, length: int, batch: tuple[int, int],
                       log=lambda _: None, precision: str = "fp32") -> dict:
    """Export, verify (ORT CPU vs PyTorch on CHECK_PROMPTS, every output) and write the text encoder graph and
    its tokenizers beside `sampler_path`; returns the sidecar entry (`text_encoder_entry`). `precision`: the
    encoders' math (export/precision.py `half_copy`: float32 normalisation; ids in, float32 embeddings out)."""
    from .verify import LIMITS, cpu_session, relative_error

    folder = Path(folder)
    kind, parts, t5_zeros = load_text_parts(folder, length)
    full = TextEncoderGraph(kind, parts, t5_zeros)
    dtype = precision_dtype(precision)
    module = full if dtype == torch.float32 else TextEncoderGraph(
        kind, [replace(p, encoder=half_copy(p.encoder, dtype)) for p in parts], t5_zeros)
    limit = LIMIT if precision == "fp32" else LIMITS[precision]
    ids = token_ids(parts, CHECK_PROMPTS)

    def run(graph: TextEncoderGraph) -> list:
        with torch.no_grad():
            out = graph(**ids)
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

    expected = run(module)
    shapes = {name: list(t.shape[1:]) for name, t in zip(module.outputs, expected, strict=True)}
    log(f"tracing the text encoder ({', '.join(type(p.encoder).__name__ for p in parts)}, {precision} -> "
        f"{', '.join(f'{n} {s}' for n, s in shapes.items())})")
    proto = export_model(module, ids, batch, OPSET_BF16 if precision == "bf16" else OPSET, module.outputs)
    compact(proto)
    set_metadata(proto, {"format": "s4s-export.text-encoder", "kind": kind, "outputs": shapes, "precision": precision},
                 f"{folder.name}: tokenizer ids -> prompt embeddings (s4s-export)")
    onnx_path, first_tokenizer = text_encoder_paths(sampler_path)
    tok_paths = [first_tokenizer if i == 0 else first_tokenizer.with_name(
        first_tokenizer.name.removesuffix(".tokenizer.json") + f".tokenizer_{i + 1}.json")
        for i in (SLOTS.index(p.slot) for p in parts)]
    staging = sampler_path.parent / f".{onnx_path.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        staged = save_onnx(proto, staging / onnx_path.name, None)
        try:
            session = cpu_session(staged[0])
        except Exception as e:  # onnxruntime's error classes derive from Exception only
            if precision != "bf16" or "NOT_IMPLEMENTED" not in str(e):
                raise
            session = None  # a missing kernel, not a broken graph (as export/verify.py BF16_NOT_RUN)
        if session is None:
            verification = "ORT CPU: not executed (ONNX Runtime's CPU provider has no bfloat16 kernels)"
        else:
            got = session.run(list(module.outputs), {k: v.numpy() for k, v in ids.items()})
            err = max(relative_error(g, e) for g, e in zip(got, expected, strict=True))
            if not err <= limit:
                raise S4SError(f"text encoder verification failed: ORT vs PyTorch max relative error {err:.2e} "
                               f"(limit {limit:.0e})")
            verification = f"ORT CPU vs PyTorch on {len(CHECK_PROMPTS)} prompts: max relative error {err:.2e}"
        if module is not full:
            deviation = max(relative_error(h, f) for h, f in zip(expected, run(full), strict=True))
            verification += f"; {precision} vs fp32 (PyTorch): max relative error {deviation:.2e}"
        for part, path in zip(parts, tok_paths, strict=True):
            (staging / path.name).write_text(tokenizer_json(part.tokenizer, part.length))
        written = move_onnx(staged, onnx_path)  # T5-XXL passes 2 GiB: its weights go to `<file>.data`
        for path in tok_paths:
            shutil.move(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    entry = text_encoder_entry(kind, parts, tok_paths, onnx_path, shapes, _force_zeros(folder, kind), verification)
    return {**entry, "precision": precision, **({"onnx_data": written[1].name} if len(written) > 1 else {})}


def _force_zeros(folder: Path, kind: str) -> bool:
    """SDXL pipelines' force_zeros_for_empty_prompt (default True): no negative prompt -> zero negative embeddings."""
    return kind == SDXL and bool(_pipeline_index(folder).get("force_zeros_for_empty_prompt", True))


def text_encoder_entry(kind: str, parts: list[TextPart], tok_paths: list[Path], onnx_path: Path,
                       shapes: dict[str, list[int]], force_zeros: bool, verification: str) -> dict:
    """The sidecar's `text_encoder` entry.

    `tokenizers`: per graph input, its tokenizer.json and ids per prompt; `outputs`: {name: shape without
    the batch}; `force_zeros_for_empty_prompt`: the runtime gives zero negative embeddings (not the empty
    prompt's) when no negative prompt is given; `onnx_data` (build_text_encoder adds it when written): the
    graph's external weights. `tokenizer`, `input`, `length`, `pad_id` repeat the first tokenizer's and
    `output`, `dim` the prompt embeddings' (the single-encoder form).
    """
    first = parts[0]
    return {TEXT_ENCODER_FILE_KEY: onnx_path.name, "kind": kind,
            TEXT_TOKENIZERS_KEY: [{"input": p.input, "file": path.name, "length": p.length,
                            "pad_id": int(p.tokenizer.pad_token_id)} for p, path in zip(parts, tok_paths, strict=True)],
            "outputs": shapes, "force_zeros_for_empty_prompt": force_zeros,
            "tokenizer": tok_paths[0].name, "input": first.input, TEXT_LENGTH_KEY: first.length,
            "pad_id": int(first.tokenizer.pad_token_id), "output": PROMPT_EMBEDS,
            TEXT_DIM_KEY: shapes[PROMPT_EMBEDS][-1],
            "verification": verification}
