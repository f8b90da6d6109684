"""A DiT-like class-conditional latent transformer (DiTTransformer2DModel, learned variance, KL VAE): learn -> eval.

    python examples/families/dit_class.py [FOLDER]

Labels are drawn per sample as for every class-conditional model; guidance runs inside the model
(`--guidance-scale`, recorded in the solver file).
"""

import sys
import tempfile
from pathlib import Path

from tiny_diffusers import learn_and_eval, save_tiny_dit

if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="s4s-dit-"))
    folder = save_tiny_dit(root / "dit")
    learn_and_eval(f"diffusers:{folder}", root / "workspace", "--guidance-scale", "1.5")
