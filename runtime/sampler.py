"""`Sampler`: load a baked sampler (ONNX graph or TensorRT engine) and turn noise or a seed into images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..contract import NOISE, TEXT_INPUTS, TIME_IDS
from ..errors import S4SError
from .inputs import _is_int, plan_batches, prepare_inputs
from .runner import Runner
from .spec import GraphSpec
from .text_encoder import TextEncoder

ENGINE_SUFFIXES = (".plan", ".engine", ".trt")


class Sampler:
    """A loaded sampler. `sampler(seed=0, n=8)` -> images (float32 NCHW in [-1, 1] or uint8 NHWC, as exported).

    Requests larger than the backend's batch range are split into runs; every input is checked first
    (errors are one-line S4SErrors). Thread-safe: onnxruntime sessions are, and the TensorRT runner
    gives each thread its own execution context. `close()` (or leaving a `with` block) closes the runner.
    """

    def __init__(self, runner: Runner, path: Path, text_encoder: TextEncoder | None = None):
        self.runner, self.path, self.text_encoder = runner, path, text_encoder

    @classmethod
    def load(cls, path: str | Path, *, providers: list[str] | None = None, device_id: int = 0,
             max_batch: int | None = None, threads: int | None = None, cuda_graph_batch: int | None = None) -> Sampler:
        """Load `model.onnx` (onnxruntime) or `model.plan` / `.engine` (TensorRT).

        providers: onnxruntime execution providers in order of preference, short names `cpu`, `cuda`,
            `tensorrt` (a list, or one comma-separated string); each must start (S4SError otherwise).
            Default: cuda then cpu when this onnxruntime has CUDA (falling back to cpu with a warning if CUDA
            does not start), else cpu.
        max_batch: largest batch per run (larger requests are split; never below a fixed or minimum batch);
            also the TensorRT provider's profile max.
        threads: onnxruntime intra-op threads, 1 to the machine's CPU count (default: onnxruntime's choice).
        cuda_graph_batch: TensorRT engines only: replay runs at this batch as a CUDA graph (within the batch
            range after max_batch).
        """
        if not isinstance(path, (str, Path)):
            raise S4SError(f"path must be a file path (str or Path) to model.onnx or model.plan; got {path!r}")
        path = Path(path)
        if max_batch is not None and (not _is_int(max_batch) or max_batch < 1):
            raise S4SError(f"max_batch must be a positive integer; got {max_batch!r}")
        cpus = os.cpu_count() or 1
        if threads is not None and (not _is_int(threads) or not 1 <= threads <= cpus):
            raise S4SError(f"threads must be an integer from 1 to {cpus} (this machine's CPUs); got {threads!r}")
        if not _is_int(device_id) or device_id < 0:
            raise S4SError(f"device_id must be a non-negative integer; got {device_id!r}")
        if isinstance(providers, str):  # "cuda,cpu" is the list its commas separate, not a list of letters
            providers = [p.strip() for p in providers.split(",") if p.strip()]
        if providers is not None and (not isinstance(providers, (list, tuple)) or not providers
                                      or not all(isinstance(p, str) for p in providers)):
            raise S4SError(f"providers must be a non-empty list of names such as ['cuda', 'cpu']; got {providers!r}")
        if path.suffix in ENGINE_SUFFIXES:
            if providers is not None or threads is not None:
                raise S4SError("providers and threads apply to .onnx graphs; a TensorRT engine runs on TensorRT itself")
            from .tensorrt_runner import TrtRunner

            runner = TrtRunner(path, device_id=device_id, max_batch=max_batch, cuda_graph_batch=cuda_graph_batch)
        elif path.suffix == ".onnx":
            if cuda_graph_batch is not None:
                raise S4SError("cuda_graph_batch applies to TensorRT engines (.plan); not to .onnx graphs")
            from .onnxruntime_runner import OrtRunner

            runner = OrtRunner(path, providers=providers, device_id=device_id, max_batch=max_batch, threads=threads)
        else:
            raise S4SError(f"{path}: unknown model file type {path.suffix!r}; expected .onnx or a TensorRT engine "
                           f"({', '.join(ENGINE_SUFFIXES)})")
        try:
            text_encoder = TextEncoder.beside(path, runner.spec.info)
        except S4SError:
            runner.close()
            raise
        return cls(runner, path, text_encoder)

    def close(self) -> None:
        """Close the runner (sessions, engine, device memory); idempotent. Calls after it raise S4SError."""
        self.runner.close()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def spec(self) -> GraphSpec:
        return self.runner.spec

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the noise."""
        return tuple(self.spec.noise.shape[1:])

    @property
    def conditional(self) -> bool:
        return self.spec.conditional

    @property
    def num_classes(self) -> int | None:
        return self.spec.num_classes

    @property
    def info(self) -> dict:
        """The graph's description (sidecar and metadata): NFE, solver, model, precision, ..."""
        return self.spec.info

    @property
    def text(self) -> bool:
        """Text-conditioned: the graph takes prompt embeddings."""
        return self.spec.text

    def __call__(self, noise=None, seed: int | None = None, n: int | None = None, class_labels=None,
                 guidance_scale=None, prompt_embeds=None, negative_prompt_embeds=None, pooled_prompt_embeds=None,
                 negative_pooled_prompt_embeds=None, add_time_ids=None, prompt: str | list[str] | None = None,
                 negative_prompt: str | list[str] | None = None) -> np.ndarray:
        """Images for `noise` [B,C,H,W], or for `n` (default 1) seeded noise images (`seeded_noise`).

        Conditional graphs take `guidance_scale` as one number or one per image (graphs exported before
        per-sample scales take one number only); default: the graph's recorded scale, else 1.

        Text-conditioned graphs take the embeddings [B, L, D] (one [L, D] row serves every image);
        negative embeddings are needed where a scale is not 1. With a
        text encoder graph beside the sampler, `prompt` (one, or one per image) and `negative_prompt`
        give them (and the pooled ones) instead; no negative prompt is the empty prompt, or zeros for SDXL
        pipelines that force zeros for it, as diffusers' pipelines.
        """
        given = (prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds,
                 add_time_ids)
        embeddings = {name: v for name, v in zip(TEXT_INPUTS, given, strict=True) if v is not None}
        if prompt is not None:
            if set(embeddings) - {TIME_IDS}:
                raise S4SError("pass either prompt or prompt_embeds (and pooled embeddings), not both")
            if self.text_encoder is None:
                raise S4SError(f"{self.path} has no text encoder graph beside it; rebuild with `s4s-export build "
                               f"--text-encoder`, or pass prompt_embeds")
            embeddings |= self.text_encoder.sampler_inputs(prompt, negative_prompt)
        elif negative_prompt is not None:
            raise S4SError("negative_prompt goes with prompt; pass prompt too")
        feeds = prepare_inputs(self.spec, noise, seed, n, class_labels, guidance_scale, embeddings)
        sizes = plan_batches(feeds[NOISE].shape[0], self.spec.batch_range, self.runner.kind)
        if len(sizes) == 1:
            return self.runner.infer(feeds)
        outputs, start = [], 0
        for size in sizes:
            outputs.append(self.runner.infer({k: v[start:start + size] if v.ndim else v for k, v in feeds.items()}))
            start += size
        return np.concatenate(outputs)
