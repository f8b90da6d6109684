"""Write a Triton Inference Server model repository for a baked sampler (ONNX Runtime and TensorRT platforms).

    repo/<name>/config.pbtxt + repo/<name>/1/model.onnx          platform onnxruntime_onnx
    repo/<name>_trt/config.pbtxt + repo/<name>_trt/1/model.plan  platform tensorrt_plan (with an engine)

Dynamic batching needs every input to carry the batch dimension. Every graph `s4s-export build` writes
now does (class-conditional and text graphs take guidance_scale per sample, [B]), so all dynamic-batch
graphs are batched; a [B] input is declared as dims [1] reshaped to [] (Triton's form for it: clients send
it as [B, 1], `triton_request`). A class-conditional graph exported before per-sample scales has a scalar
`guidance_scale` and gets NO dynamic batching: it is written, like a graph with a fixed batch, with
`max_batch_size: 0` (full shapes, batch dimension -1; each request runs alone, as sent).
An engine must come from build_engine for this very graph (its sidecar's onnx_sha256 is checked), and
with dynamic batching its profile must start at batch 1 (Triton forms batches from 1 up). Each
config.pbtxt is parsed with Triton's own schema (`model_config_pb2` of the tritonclient package) when that
is available; without it the config is written unchecked.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np

from ..cachedir import cache_root
from ..contract import (
    ENGINE_KEY,
    GUIDANCE,
    IMAGES,
    NOISE,
    TEXT_ENCODER_KEY,
    TIME_IDS,
    external_data_path,
    read_sidecar,
    sidecar_path,
)
from ..errors import S4SError
from ..fileio import atomic_write, atomic_write_text
from .spec import GraphSpec, TensorSpec
from .tensorrt_build import onnx_sha256
from .text_encoder import NEGATIVE, encoder_io

_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int64": "TYPE_INT64",
                 "int32": "TYPE_INT32", "uint8": "TYPE_UINT8"}


def model_config_schema() -> ModuleType | None:
    """Triton's `model_config_pb2`, loaded by path (so grpcio is not needed), or None.

    From an installed tritonclient, else from the unpacked wheel in $S4S_CACHE/tritonclient
    (.ci/fetch_runtime_wheels.sh puts it there).
    """
    found = importlib.util.find_spec("tritonclient")
    roots = [Path(p) for p in (found.submodule_search_locations or [])] if found else []
    roots.append(cache_root() / "tritonclient" / "tritonclient")
    for path in (root / "grpc" / "model_config_pb2.py" for root in roots):
        if path.is_file():
            spec = importlib.util.spec_from_file_location("s4s_triton_model_config_pb2", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


def validate_config(text: str, where: str = "config.pbtxt") -> bool:
    """Parse `text` as Triton's ModelConfig; S4SError on a schema violation; False when the schema is absent."""
    schema = model_config_schema()
    if schema is None:
        return False
    from google.protobuf import text_format

    try:
        text_format.Parse(text, schema.ModelConfig())
    except text_format.ParseError as e:
        raise S4SError(f"{where} does not match Triton's model-config schema: {e}") from None
    return True


def dynamic_batching(spec: GraphSpec, max_batch: int) -> bool:
    """Whether Triton may batch requests: a dynamic batch dimension on every input (no scalar guidance_scale)."""
    return max_batch > 0 and spec.noise.shape[0] is None and all(t.shape for t in spec.inputs.values())


def triton_request(spec: GraphSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A sampler's feeds (runtime/inputs.py prepare_inputs) as a client sends them to the model
    `write_triton_repository` wrote: with dynamic batching a [B] input goes as [B, 1] (its dims [1])."""
    if not dynamic_batching(spec, 1):
        return dict(feeds)
    return {name: value.reshape(-1, 1) if value.ndim == 1 else value for name, value in feeds.items()}


def config_text(spec: GraphSpec, name: str, platform: str, max_batch: int, queue_delay_us: int,
                instances: int | None) -> str:
    """config.pbtxt for one model."""
    batched = dynamic_batching(spec, max_batch)

    def tensor(t: TensorSpec) -> str:
        if t.dtype.name not in _TRITON_TYPES:
            raise S4SError(f"Triton has no type for {t.describe()}")
        dims = t.shape[1:] if batched else t.shape
        # a batched [B] tensor (labels, per-sample guidance_scale): Triton needs dims [1], reshaped to [] per sample
        batch_only = batched and not dims
        text = "1" if batch_only else ", ".join("-1" if d is None else str(d) for d in dims)
        reshape = "\n    reshape: { shape: [ ] }" if batch_only else ""
        return (f'  {{\n    name: "{t.name}"\n    data_type: {_TRITON_TYPES[t.dtype.name]}\n'
                f'    dims: [ {text} ]{reshape}\n  }}')

    lines = [f'name: "{name}"', f'platform: "{platform}"', f"max_batch_size: {max_batch if batched else 0}",
             "input [\n" + ",\n".join(tensor(t) for t in spec.inputs.values()) + "\n]",
             "output [\n" + tensor(spec.output) + "\n]"]
    if batched:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}")
    if instances is not None:
        lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_GPU\n  }}\n]")
    return "\n".join(lines) + "\n"


NEGATIVE_PREFIX = "negative_"  # the ensemble's ids inputs for the negative (or empty) prompt: negative_input_ids, ...


def ensemble_inputs(spec: GraphSpec, entry: dict) -> list[str] | None:
    """The sampler inputs an ensemble takes from its client (noise, add_time_ids, guidance_scale), or None when
    the text encoder's outputs and their negatives do not make up the rest of the sampler's inputs."""
    _, outputs = encoder_io(entry)
    made = {*outputs, *(NEGATIVE[name] for name in outputs)}
    rest = [name for name in spec.inputs if name not in made]
    if not made <= set(spec.inputs) or not set(rest) <= {NOISE, TIME_IDS, GUIDANCE}:
        return None
    return rest


def ensemble_texts(spec: GraphSpec, name: str, entry: dict, max_batch: int, queue_delay_us: int) -> dict[str, str]:
    """config.pbtxt of `<name>_text_encoder` (ids [L_i] per tokenizer -> prompt_embeds [L, D], and
    pooled_prompt_embeds [P] for SDXL/SD3; batched) and of `<name>_ensemble` (the ids, the negative prompt's ids
    `negative_input_ids...`, noise, add_time_ids for SDXL, guidance_scale -> images): the text encoder runs once
    on the prompts and once on the negative prompts, then the sampler."""
    ids, outputs = encoder_io(entry)
    encoder = f"{name}_text_encoder"
    batching = f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}"

    def tensor(tname: str, dtype: str, dims: list[int]) -> str:
        return f'  {{\n    name: "{tname}"\n    data_type: {dtype}\n    dims: [ {", ".join(map(str, dims))} ]\n  }}'

    def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
        maps = [f'      input_map {{\n        key: "{k}"\n        value: "{v}"\n      }}' for k, v in inputs.items()]
        maps += [f'      output_map {{\n        key: "{k}"\n        value: "{v}"\n      }}' for k, v in outputs.items()]
        return f'    {{\n      model_name: "{model}"\n      model_version: -1\n' + "\n".join(maps) + "\n    }"

    id_tensors = [tensor(n, "TYPE_INT64", [length]) for n, (_, length) in ids.items()]
    encoder_text = "\n".join([
        f'name: "{encoder}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch}",
        "input [\n" + ",\n".join(id_tensors) + "\n]",
        "output [\n" + ",\n".join(tensor(n, "TYPE_FP32", shape) for n, shape in outputs.items()) + "\n]",
        batching]) + "\n"
    rest = ensemble_inputs(spec, entry)
    out = spec.output
    steps = [step(encoder, {n: n for n in ids}, {n: n for n in outputs}),
             step(encoder, {n: NEGATIVE_PREFIX + n for n in ids}, {n: NEGATIVE[n] for n in outputs}),
             step(name, {n: n for n in spec.inputs}, {IMAGES: IMAGES})]
    client = [tensor(spec.inputs[n].name, _TRITON_TYPES[spec.inputs[n].dtype.name],
                     list(spec.inputs[n].shape[1:]) or [1]) for n in rest]
    ensemble_text = "\n".join([
        f'name: "{name}_ensemble"', 'platform: "ensemble"', f"max_batch_size: {max_batch}",
        "input [\n" + ",\n".join(id_tensors + [tensor(NEGATIVE_PREFIX + n, "TYPE_INT64", [length])
                                                 for n, (_, length) in ids.items()] + client) + "\n]",
        "output [\n" + tensor(out.name, _TRITON_TYPES[out.dtype.name], list(out.shape[1:])) + "\n]",
        "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}"]) + "\n"
    return {encoder: encoder_text, f"{name}_ensemble": ensemble_text}


def _copy(src: Path, dst: Path) -> None:
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def _engine_max_batch(engine_path: Path, onnx_path: Path, spec: GraphSpec, max_batch: int) -> int:
    """max_batch capped by the engine's profile, after checking the engine was built from this graph for Triton."""
    key = read_sidecar(engine_path).get(ENGINE_KEY)
    rebuild = f"rebuild it with runtime.build_engine('{onnx_path}') or `s4s-export build --trt`"
    if not isinstance(key, dict) or "onnx_sha256" not in key or len(key.get("batch_range") or ()) != 3:
        raise S4SError(f"{sidecar_path(engine_path)} is missing or has no build key (onnx_sha256, batch_range), "
                       f"so {engine_path} cannot be matched to {onnx_path}; {rebuild}")
    if key["onnx_sha256"] != onnx_sha256(onnx_path):
        raise S4SError(f"{engine_path} was built from another graph than {onnx_path} (sha256 differs); {rebuild}")
    lo, _, hi = key["batch_range"]
    engine_max = min(max_batch, hi)
    if lo > 1 and dynamic_batching(spec, engine_max):
        raise S4SError(f"{engine_path}'s profile starts at batch {lo}, but Triton's dynamic batching sends batches "
                       f"from 1; rebuild it from batch 1: runtime.build_engine('{onnx_path}', "
                       f"batch_range=(1, {min(4, hi)}, {hi}))")
    return engine_max


def write_triton_repository(onnx_path: str | Path, repo_dir: str | Path, engine_path: str | Path | None = None, *,
                            name: str | None = None, max_batch: int = 16, queue_delay_us: int = 1000,
                            instances: int = 1) -> Path:
    """Write (or update) a Triton model repository serving `onnx_path`, and `engine_path` when given.

    The engine must have been built from `onnx_path` by build_engine (its sidecar records the graph's sha256),
    and, when the graph allows dynamic batching, with a profile starting at batch 1.

    max_batch: Triton's max_batch_size (capped by the engine's batch range for the TensorRT model).
    queue_delay_us: how long dynamic batching waits to fill a batch.
    instances: execution instances of the TensorRT model on each GPU.
    A text-conditioned graph with a text encoder graph beside it (build --text-encoder) also gets
    `<name>_text_encoder` and `<name>_ensemble` (input_ids..., negative_input_ids..., noise, add_time_ids for
    SDXL, guidance_scale -> images; `ensemble_texts`).
    """
    from .onnxruntime_runner import OrtRunner

    onnx_path, repo_dir = Path(onnx_path), Path(repo_dir)
    if not isinstance(max_batch, int) or max_batch < 1:
        raise S4SError(f"max_batch must be a positive integer; got {max_batch!r}")
    name = name or onnx_path.stem
    with OrtRunner(onnx_path, providers=["cpu"]) as runner:
        spec = runner.spec
    models = [(name, "onnxruntime_onnx", onnx_path, "model.onnx", max_batch, None)]
    if engine_path is not None:
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise S4SError(f"{engine_path} does not exist; build it with `s4s-export build --trt`")
        engine_max = _engine_max_batch(engine_path, onnx_path, spec, max_batch)
        models.append((f"{name}_trt", "tensorrt_plan", engine_path, "model.plan", engine_max, instances))
    for model, platform, source, filename, batch, count in models:
        text = config_text(spec, model, platform, batch, queue_delay_us, count)
        validate_config(text, f"{repo_dir / model / 'config.pbtxt'}")
        version = repo_dir / model / "1"
        _copy(source, version / filename)
        weights = external_data_path(source)  # external weights keep the name the graph refers to
        if platform == "onnxruntime_onnx" and weights.is_file():
            _copy(weights, version / weights.name)
        atomic_write_text(repo_dir / model / "config.pbtxt", text)
    entry = spec.info.get(TEXT_ENCODER_KEY)
    if isinstance(entry, dict) and dynamic_batching(spec, max_batch) and ensemble_inputs(spec, entry) is not None:
        for model, text in ensemble_texts(spec, name, entry, max_batch, queue_delay_us).items():
            validate_config(text, f"{repo_dir / model / 'config.pbtxt'}")
            if model.endswith("_text_encoder"):
                graph = onnx_path.with_name(entry["onnx"])
                _copy(graph, repo_dir / model / "1" / "model.onnx")
                if external_data_path(graph).is_file():  # T5-XXL's weights keep the name the graph refers to
                    _copy(external_data_path(graph), repo_dir / model / "1" / external_data_path(graph).name)
            else:
                (repo_dir / model / "1").mkdir(parents=True, exist_ok=True)  # Triton wants a version folder
            atomic_write_text(repo_dir / model / "config.pbtxt", text)
    return repo_dir
