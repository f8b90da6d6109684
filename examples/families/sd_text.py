"""A Stable-Diffusion-like text-to-image model (UNet2DConditionModel, CLIP text encoder, KL VAE): learn -> eval.

    python examples/families/sd_text.py [FOLDER]

Builds a tiny random pipeline with diffusers' own classes, saves it with save_pretrained, and runs
`s4s-export learn --model diffusers:FOLDER --prompts prompts.txt` and `eval` (latent and pixel
distances to the teacher on the held-out prompts; the sample grid shows decoded images).
With real weights the same commands take the downloaded folder (docs/models.md).
"""

import sys
import tempfile
from pathlib import Path

from tiny_diffusers import learn_and_eval, save_tiny_sd

PROMPTS = Path(__file__).with_name("prompts.txt")

if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="s4s-sd-"))
    folder = save_tiny_sd(root / "sd")
    learn_and_eval(f"diffusers:{folder}", root / "workspace", "--prompts", str(PROMPTS), "--guidance-scale", "3")
