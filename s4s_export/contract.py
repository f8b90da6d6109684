"""The graph contract: what a baked sampler graph takes and gives, and how it describes itself (torch-free base).

One home for the names the exporter writes and every runtime reads (Python, C++ through the generated
runtime/cpp/src/contract.h, Triton), see docs/export.md and docs/runtime.md:

- inputs `noise` [B,C,H,W] float32, plus `class_labels` [B] int64 and `guidance_scale` [B] float32 (one
  scale per sample) for class-conditional models; one output `images`, float32 NCHW in [-1, 1] or uint8
  NHWC in [0, 255]. Only the batch dimension may be dynamic. Graphs exported before per-sample scales take
  `guidance_scale` [] (one for the batch); the runtimes read the graph's shape and feed either form.
- the description: a JSON sidecar beside the model file (`model.onnx` -> `model.json`; an engine
  `model.plan` -> `model.plan.json`) whose top-level keys are also the ONNX graph's metadata_props
  (each value JSON-encoded). The sidecar wins where both have a key.
- external weights of a graph live in `<file>.data` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import S4SError

if TYPE_CHECKING:  # onnx is imported only by the functions that read graphs
    import onnx

NOISE = "noise"
LABELS = "class_labels"
GUIDANCE = "guidance_scale"
IMAGES = "images"
INPUTS = (NOISE, LABELS, GUIDANCE)  # in graph order; an unconditional graph has only the first
# Text-conditioned (latent) graphs (docs/export.md "Latent and text-conditioned graphs"): after noise come
# the prompt embeddings [B, L, D] and the unconditional (negative) ones, then what the network needs besides
# (pooled [B, P] for SDXL/SD3, SDXL's micro-conditioning time ids [B, 6]), last guidance_scale [B].
PROMPT_EMBEDS = "prompt_embeds"
NEGATIVE_PROMPT_EMBEDS = "negative_prompt_embeds"
POOLED_EMBEDS = "pooled_prompt_embeds"
NEGATIVE_POOLED_EMBEDS = "negative_pooled_prompt_embeds"
TIME_IDS = "add_time_ids"
TEXT_INPUTS = (PROMPT_EMBEDS, NEGATIVE_PROMPT_EMBEDS, POOLED_EMBEDS, NEGATIVE_POOLED_EMBEDS, TIME_IDS)
ALL_INPUTS = (NOISE, LABELS, *TEXT_INPUTS, GUIDANCE)  # every name a sampler graph may take, in graph order
LATENTS = "latents"  # the output of a latent graph built with --no-decode (latents, not images)
EMBEDS_DTYPE = "float32"
# The text encoder graph beside a text-conditioned sampler (build --text-encoder): input_ids [B, L] int64 ->
# prompt_embeds [B, L, D]; the sampler's description names it and its tokenizer.json under TEXT_ENCODER_KEY.
INPUT_IDS = "input_ids"
INPUT_IDS_DTYPE = "int64"
TEXT_ENCODER_KEY = "text_encoder"
# Pipelines with several tokenizers (SDXL: 2, SD3: 3 with T5): one ids input per tokenizer, in this order; the
# graph also gives pooled_prompt_embeds [B, P] (export/text_encoder.py).
INPUT_IDS_INPUTS = (INPUT_IDS, "input_ids_2", "input_ids_3")
TEXT_ENCODER_FILE_KEY = "onnx"  # the text encoder entry: its graph's file name (beside the sampler), ...
TEXT_LENGTH_KEY = "length"  # ... ids per prompt (L), ...
TEXT_DIM_KEY = "dim"  # ... and embedding width (D)
TEXT_TOKENIZERS_KEY = "tokenizers"  # one entry per ids input (SDXL: 2, SD3: 3; absent or 1: CLIP)

NOISE_DTYPE = "float32"
LABELS_DTYPE = "int64"
GUIDANCE_DTYPE = "float32"
IMAGE_FORMATS = {  # --output -> the images tensor: dtype, layout, value range
    "float": ("float32", "NCHW", [-1, 1]),
    "uint8": ("uint8", "NHWC", [0, 255]),
}

SIDECAR_FORMAT = "s4s-export.graph"
SIDECAR_VERSION = 1
# Top-level description keys read by the runtimes (the rest is documentation: docs/export.md).
NUM_CLASSES_KEY = "num_classes"  # conditional models: label num_classes is the null (unconditional) label
MODEL_KEY = "model"  # {..., "num_classes"}: where older graphs record the number of classes
GUIDANCE_KEY = GUIDANCE  # the default guidance scale of a conditional graph
ENGINE_KEY = "engine"  # an engine's sidecar: the build key (runtime/tensorrt_build.py)
ONNX_KEY = "onnx"  # a sidecar: the model file it describes
# Documentation keys (runtimes need neither: a graph's inputs and outputs are float32 at every precision)
PRECISION_KEY = "precision"  # the --precision label of the file name: fp32, fp16, fp16-decoder-fp16, ...
COMPONENT_PRECISION_KEY = "component_precision"  # {"denoiser": "fp16", "decoder": "fp32", "text-encoder": ...}
DEFAULT_GUIDANCE = 1.0  # D_u + s (D_c - D_u) with s = 1: the plain conditional model

EXTERNAL_DATA_SUFFIX = ".data"
SIDECAR_SUFFIX = ".json"


def io_description(chw: tuple[int, int, int], batch: tuple[int, int], num_classes: int, guidance_scale: float,
                   output: str) -> tuple[list[dict], list[dict]]:
    """The sidecar's `inputs` and `outputs`: names, dtypes, shapes (`"batch"` for a dynamic batch), ranges."""
    c, h, w = chw
    lo, hi = batch
    b = lo if lo == hi else "batch"
    inputs = [{"name": NOISE, "dtype": NOISE_DTYPE, "shape": [b, c, h, w]}]
    if num_classes:
        inputs += [{"name": LABELS, "dtype": LABELS_DTYPE, "shape": [b], "range": [0, num_classes],
                    "null_label": num_classes},
                   {"name": GUIDANCE, "dtype": GUIDANCE_DTYPE, "shape": [b], "default": guidance_scale}]
    dtype, layout, value_range = IMAGE_FORMATS[output]
    shape = [b, h, w, c] if layout == "NHWC" else [b, c, h, w]
    return inputs, [{"name": IMAGES, "dtype": dtype, "shape": shape, "layout": layout, "range": value_range}]


def recorded_num_classes(info: dict) -> int | None:
    """Number of classes a description records (top-level, else under `model`), if a positive integer."""
    model = info.get(MODEL_KEY)
    for value in (info.get(NUM_CLASSES_KEY), model.get(NUM_CLASSES_KEY) if isinstance(model, dict) else None):
        if isinstance(value, int) and value > 0:
            return value
    return None


def external_data_path(model_path: str | Path) -> Path:
    """`model.onnx` -> `model.onnx.data`: where a graph's external weights live."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + EXTERNAL_DATA_SUFFIX)


def graph_files(model_path: str | Path) -> list[Path]:
    """The graph file and, when present, its external weights."""
    data = external_data_path(model_path)
    return [Path(model_path), data] if data.is_file() else [Path(model_path)]


def text_encoder_paths(sampler_path: str | Path) -> tuple[Path, Path]:
    """`sd.onnx` -> (`sd.text_encoder.onnx`, `sd.tokenizer.json`): the text encoder graph and tokenizer beside it."""
    sampler_path = Path(sampler_path)
    stem = sampler_path.name.removesuffix(sampler_path.suffix)
    return sampler_path.with_name(stem + ".text_encoder.onnx"), sampler_path.with_name(stem + ".tokenizer.json")


def sidecar_path(model_path: str | Path) -> Path:
    """`model.onnx` -> `model.json` (the exporter's); an engine `model.plan` -> `model.plan.json` (build_engine's)."""
    model_path = Path(model_path)
    if model_path.suffix == ".onnx":
        return model_path.with_suffix(SIDECAR_SUFFIX)
    return model_path.with_name(model_path.name + SIDECAR_SUFFIX)


def read_sidecar(model_path: str | Path) -> dict:
    """The JSON sidecar next to a model file, or {} when there is none."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise S4SError(f"{path} is not valid JSON ({e}); delete it or re-export the model") from None
    if not isinstance(doc, dict):
        raise S4SError(f"{path} should hold a JSON object; delete it or re-export the model")
    return doc


def encode_metadata(doc: dict) -> dict[str, str]:
    """The metadata_props of a description: each top-level key holds its compact JSON value."""
    return {key: json.dumps(value, separators=(",", ":")) for key, value in doc.items()}


def parse_metadata(props: dict[str, str]) -> dict:
    """ONNX metadata_props (all strings) as values: JSON where a value parses as JSON, else the string."""
    out = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            out[key] = value
    return out


def load_graph_header(path: str | Path) -> onnx.ModelProto:
    """The ONNX model without its external weights; S4SError when the file is missing or unreadable."""
    import onnx

    path = Path(path)
    if path.is_dir():
        raise S4SError(f"{path} is a folder, not an ONNX file; pass the .onnx file a build wrote")
    if not path.is_file():
        raise S4SError(f"{path} does not exist; build a graph with `s4s-export build`")
    if path.stat().st_size == 0:
        raise S4SError(f"{path} is empty (0 bytes), not an ONNX model; rebuild it with `s4s-export build`")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 (protobuf raises several types for a bad file)
        raise S4SError(f"{path} is not a readable ONNX model ({e})") from None
    if not model.graph.output:
        raise S4SError(f"{path} is not an ONNX model (no graph outputs); rebuild it with `s4s-export build`")
    return model


def onnx_metadata(model: onnx.ModelProto) -> dict:
    """A loaded graph's metadata_props, parsed (`parse_metadata`)."""
    return parse_metadata({p.key: p.value for p in model.metadata_props})


def graph_description(path: str | Path) -> dict:
    """An ONNX graph's description: its metadata_props overlaid with its JSON sidecar."""
    return {**onnx_metadata(load_graph_header(path)), **read_sidecar(path)}


CPP_HEADER = "runtime/cpp/src/contract.h"  # written by scripts/write_contract_header.py, checked by a test


def cpp_header() -> str:
    """The C++ runtime's copy of the contract (CPP_HEADER): the same names as constants."""
    strings = [("kNoise", NOISE), ("kClassLabels", LABELS), ("kGuidanceScale", GUIDANCE), ("kImages", IMAGES),
               ("kNoiseDtype", NOISE_DTYPE), ("kClassLabelsDtype", LABELS_DTYPE),
               ("kGuidanceScaleDtype", GUIDANCE_DTYPE),
               ("kImagesFloatDtype", IMAGE_FORMATS["float"][0]), ("kImagesUint8Dtype", IMAGE_FORMATS["uint8"][0]),
               ("kNumClassesKey", NUM_CLASSES_KEY), ("kModelKey", MODEL_KEY), ("kGuidanceKey", GUIDANCE_KEY),
               ("kSidecarSuffix", SIDECAR_SUFFIX), ("kPromptEmbeds", PROMPT_EMBEDS),
               ("kNegativePromptEmbeds", NEGATIVE_PROMPT_EMBEDS), ("kPooledEmbeds", POOLED_EMBEDS),
               ("kNegativePooledEmbeds", NEGATIVE_POOLED_EMBEDS), ("kTimeIds", TIME_IDS), ("kLatents", LATENTS),
               ("kEmbedsDtype", EMBEDS_DTYPE), ("kInputIds", INPUT_IDS), ("kInputIdsDtype", INPUT_IDS_DTYPE),
               ("kTextEncoderKey", TEXT_ENCODER_KEY), ("kTextEncoderFileKey", TEXT_ENCODER_FILE_KEY),
               ("kTextLengthKey", TEXT_LENGTH_KEY), ("kTextDimKey", TEXT_DIM_KEY),
               ("kTextTokenizersKey", TEXT_TOKENIZERS_KEY)]
    lines = ["// Generated from s4s_export/contract.py by scripts/write_contract_header.py: do not edit.",
             "// tests/runtime/test_contract_header.py checks that it is current and that runtime/cpp uses it.",
             "#pragma once", "", "namespace s4s::contract {", ""]
    lines += [f'inline constexpr char {name}[] = "{value}";' for name, value in strings]
    lines += [f"inline constexpr float kDefaultGuidance = {DEFAULT_GUIDANCE!r}f;"]
    lines += ["// text inputs of text-conditioned graphs, in graph order",
              "inline constexpr const char* kTextInputs[] = {" + ", ".join(f'"{n}"' for n in TEXT_INPUTS) + "};",
              "", "}  // namespace s4s::contract"]
    return "\n".join(lines) + "\n"
