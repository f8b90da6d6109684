"""An SD3-like flow-matching transformer (SD3Transformer2DModel, FlowMatchEulerDiscreteScheduler): learn -> eval.

    python examples/families/flow_transformer.py [FOLDER]

The folder holds the transformer and its scheduler config, no text encoders, so the prompts come as
embeddings encoded elsewhere: a safetensors file with the keys of diffusers' encode_prompt outputs
(docs/learning.md). Random embeddings stand in for T5/CLIP outputs here.
"""

import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from tiny_diffusers import learn_and_eval, save_tiny_flow

if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="s4s-flow-"))
    folder = save_tiny_flow(root / "sd3")
    g = torch.Generator().manual_seed(0)
    prompts, tokens = 10, 6  # joint_attention_dim 32, pooled_projection_dim 64 (tiny_diffusers.save_tiny_flow)
    save_file({"prompt_embeds": torch.randn(prompts, tokens, 32, generator=g),
               "negative_prompt_embeds": torch.zeros(prompts, tokens, 32),
               "pooled_prompt_embeds": torch.randn(prompts, 64, generator=g),
               "negative_pooled_prompt_embeds": torch.zeros(prompts, 64)}, str(root / "embeddings.safetensors"))
    learn_and_eval(f"diffusers:{folder}", root / "workspace", "--embeddings", str(root / "embeddings.safetensors"))
