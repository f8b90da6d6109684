"""Where the package's bundled files live (torch-free)."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_ASSET = ASSETS / "demo.safetensors"
DIGITS_GMM = ASSETS / "gmm_digits.safetensors"
