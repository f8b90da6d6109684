"""The text encoder beside a text-conditioned sampler: prompt -> ids (tokenizers) -> embeddings (onnxruntime),
torch-free.

`build --text-encoder` writes `<stem>.text_encoder.onnx` (one int64 ids input [B, L_i] per tokenizer ->
prompt_embeds [B, L, D], plus pooled_prompt_embeds [B, P] for SDXL and SD3) and one tokenizer.json per
tokenizer (padding and truncation to L_i set), and names them in the sampler's description under
`text_encoder` (s4s_export/export/text_encoder.py `text_encoder_entry`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contract import (
    INPUT_IDS,
    NEGATIVE_POOLED_EMBEDS,
    NEGATIVE_PROMPT_EMBEDS,
    POOLED_EMBEDS,
    PROMPT_EMBEDS,
    TEXT_DIM_KEY,
    TEXT_ENCODER_FILE_KEY,
    TEXT_ENCODER_KEY,
    TEXT_LENGTH_KEY,
    TEXT_TOKENIZERS_KEY,
)
from ..errors import S4SError

NEGATIVE = {PROMPT_EMBEDS: NEGATIVE_PROMPT_EMBEDS, POOLED_EMBEDS: NEGATIVE_POOLED_EMBEDS}  # output -> its negative


def encoder_io(entry: dict) -> tuple[dict[str, tuple[str, int]], dict[str, list[int]]]:
    """A sidecar's text_encoder entry as ({ids input: (tokenizer.json, ids per prompt)}, {output: shape without
    the batch}), in graph order; entries without `tokenizers` are the single-encoder (CLIP) form."""
    if TEXT_TOKENIZERS_KEY in entry:
        return ({t["input"]: (t["file"], int(t["length"])) for t in entry[TEXT_TOKENIZERS_KEY]},
                {name: list(shape) for name, shape in entry["outputs"].items()})
    return ({INPUT_IDS: (entry["tokenizer"], int(entry[TEXT_LENGTH_KEY]))},
            {PROMPT_EMBEDS: [int(entry[TEXT_LENGTH_KEY]), int(entry[TEXT_DIM_KEY])]})


class TextEncoder:
    """`encoder(["a prompt", ...])` -> {prompt_embeds [B, L, D], pooled_prompt_embeds [B, P] (SDXL, SD3)};
    `encoder.ids(prompts)` -> {input name: ids [B, L_i]}; `encoder.sampler_inputs(prompt, negative_prompt)` ->
    the sampler's text inputs for both."""

    def __init__(self, onnx_path: Path, tokenizers: dict[str, tuple[Path, int]], outputs: list[str],
                 force_zeros_for_empty_prompt: bool = False, providers: list[str] | None = None):
        """tokenizers: {graph input: (tokenizer.json, ids per prompt)}; outputs: the graph's output names."""
        try:
            import tokenizers as hf_tokenizers
        except ImportError:
            raise S4SError("prompts need the tokenizers package (torch-free): pip install tokenizers; or pass "
                           "prompt_embeds") from None
        from .onnxruntime_runner import import_onnxruntime

        for p in (onnx_path, *(path for path, _ in tokenizers.values())):
            if not p.is_file():
                raise S4SError(f"{p} is missing; rebuild with `s4s-export build --text-encoder` or pass prompt_embeds")
        self.tokenizers = {name: (hf_tokenizers.Tokenizer.from_file(str(path)), int(length))
                           for name, (path, length) in tokenizers.items()}
        self.outputs = list(outputs)
        self.force_zeros_for_empty_prompt = bool(force_zeros_for_empty_prompt)
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers or ["CPUExecutionProvider"])

    @classmethod
    def beside(cls, sampler_path: Path, info: dict, providers: list[str] | None = None) -> TextEncoder | None:
        """The text encoder a sampler's description names, or None when it names none."""
        entry = info.get(TEXT_ENCODER_KEY)
        if not isinstance(entry, dict):
            return None
        inputs, outputs = encoder_io(entry)
        tokenizers = {name: (sampler_path.with_name(file), length) for name, (file, length) in inputs.items()}
        return cls(sampler_path.with_name(entry[TEXT_ENCODER_FILE_KEY]), tokenizers, list(outputs),
                   entry.get("force_zeros_for_empty_prompt", False), providers)

    def ids(self, prompts: list[str]) -> dict[str, np.ndarray]:
        out = {}
        for name, (tokenizer, length) in self.tokenizers.items():
            ids = np.array([e.ids for e in tokenizer.encode_batch(list(prompts))], dtype=np.int64)
            if ids.shape[1:] != (length,):
                raise S4SError(f"the tokenizer for {name} gave {ids.shape[1]} ids per prompt, not {length}; rebuild "
                               f"with `s4s-export build --text-encoder`")
            out[name] = ids
        return out

    def __call__(self, prompts: list[str]) -> dict[str, np.ndarray]:
        if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not prompts or not all(
                isinstance(p, str) for p in prompts):
            raise S4SError(f"prompts must be a non-empty list of strings; got {prompts!r}")
        return dict(zip(self.outputs, self.session.run(self.outputs, self.ids(prompts)), strict=True))

    def sampler_inputs(self, prompt: str | list[str], negative_prompt: str | list[str] | None = None
                       ) -> dict[str, np.ndarray]:
        """prompt_embeds (pooled_prompt_embeds) of `prompt` and negative_prompt_embeds (negative_pooled_prompt_embeds)
        of `negative_prompt`, as diffusers' pipelines: no negative prompt is the empty prompt, or zeros where the
        pipeline sets force_zeros_for_empty_prompt (SDXL)."""
        prompts = [prompt] if isinstance(prompt, str) else prompt
        out = self(prompts)
        if negative_prompt is None and self.force_zeros_for_empty_prompt:
            negative = {name: np.zeros_like(v) for name, v in out.items()}
        else:
            negative = self(negative_prompt if isinstance(negative_prompt, (list, tuple)) else [negative_prompt or ""])
        return {**out, **{NEGATIVE[name]: v for name, v in negative.items()}}
