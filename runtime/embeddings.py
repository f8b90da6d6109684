"""Prompt embeddings from files, for text-conditioned graphs run without a text encoder graph (torch-free).

`.npy`: one array, the prompt embeddings [B, L, D] or [L, D]. `.safetensors`: tensors named as the graph's
text inputs (contract.TEXT_INPUTS: prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, ...),
as diffusers' `encode_prompt` returns them; read with safetensors' numpy API (no torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contract import PROMPT_EMBEDS, TEXT_INPUTS
from ..errors import S4SError


def load_embeddings(path: str | Path, name: str = PROMPT_EMBEDS) -> dict[str, np.ndarray]:
    """{input name: array} from a .npy (named `name`) or a .safetensors file (its tensors' own names)."""
    path = Path(path)
    if not path.is_file():
        raise S4SError(f"embeddings file {path} does not exist; save prompt embeddings as .npy or .safetensors")
    if path.suffix == ".npy":
        try:
            return {name: np.load(path, allow_pickle=False)}
        except ValueError as e:
            raise S4SError(f"{path} is not a numpy array file ({e}); save it with numpy.save") from None
    if path.suffix != ".safetensors":
        raise S4SError(f"{path}: embeddings files are .npy or .safetensors; got {path.suffix!r}")
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise S4SError("reading .safetensors embeddings needs the safetensors package: pip install safetensors; "
                       "or save them as .npy") from None
    try:
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 (safetensors raises its own error types for a damaged file)
        raise S4SError(f"{path} is not a readable safetensors file ({e})") from None
    unknown = sorted(set(tensors) - set(TEXT_INPUTS))
    if unknown:
        raise S4SError(f"{path} holds tensors {', '.join(unknown)} that no graph input is named after; name them "
                       f"{', '.join(TEXT_INPUTS)}")
    return dict(tensors)
