"""The text encoder beside a text-conditioned sampler: prompt -> ids (tokenizers) -> embeddings (onnxruntime),
torch-free.

`build --text-encoder` writes `<stem>.text_encoder.onnx` (input_ids [B, L] int64 -> prompt_embeds [B, L, D])
and `<stem>.tokenizer.json` (padding and truncation to L set) and names both in the sampler's description
under `text_encoder` (s4s_export/export/text_encoder.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contract import INPUT_IDS, PROMPT_EMBEDS, TEXT_ENCODER_KEY
from ..errors import S4SError


class TextEncoder:
    """`encoder(["a prompt", ...]) -> prompt_embeds [B, L, D]`; `encoder.ids(prompts) -> input_ids [B, L]`."""

    def __init__(self, onnx_path: Path, tokenizer_path: Path, length: int, providers: list[str] | None = None):
        try:
            import tokenizers
        except ImportError:
            raise S4SError("prompts need the tokenizers package (torch-free): pip install tokenizers; or pass "
                           "prompt_embeds") from None
        from .onnxruntime_runner import import_onnxruntime

        for p in (onnx_path, tokenizer_path):
            if not p.is_file():
                raise S4SError(f"{p} is missing; rebuild with `s4s-export build --text-encoder` or pass prompt_embeds")
        self.tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_path))
        self.length = int(length)
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
        return cls(sampler_path.with_name(entry["onnx"]), sampler_path.with_name(entry["tokenizer"]), entry["length"],
                   providers)

    def ids(self, prompts: list[str]) -> np.ndarray:
        ids = np.array([e.ids for e in self.tokenizer.encode_batch(list(prompts))], dtype=np.int64)
        if ids.shape[1:] != (self.length,):
            raise S4SError(f"the tokenizer gave {ids.shape[1]} ids per prompt, not {self.length}; rebuild with "
                           f"`s4s-export build --text-encoder`")
        return ids

    def __call__(self, prompts: list[str]) -> np.ndarray:
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise S4SError("prompts must be a list of strings")
        return self.session.run([PROMPT_EMBEDS], {INPUT_IDS: self.ids(prompts)})[0]
