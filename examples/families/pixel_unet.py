"""A pixel-space unconditional UNet2DModel with a DDPM scheduler (DDPMPipeline layout): learn -> eval.

    python examples/families/pixel_unet.py [FOLDER]
"""

import sys
import tempfile
from pathlib import Path

from tiny_diffusers import learn_and_eval, save_tiny_pixel_unet

if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="s4s-pixel-"))
    folder = save_tiny_pixel_unet(root / "ddpm")
    learn_and_eval(f"diffusers:{folder}", root / "workspace")
