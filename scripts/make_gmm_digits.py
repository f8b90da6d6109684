"""Fit the bundled exact model `gmm`: one diagonal Gaussian per sklearn digit class (1x8x8, [-1, 1]).

Run once (needs scikit-learn): python scripts/make_gmm_digits.py
Writes s4s_export/assets/gmm_digits.safetensors (a few kB).
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits

VAR_FLOOR = 1e-3  # pixels that never vary (borders) keep a small variance

digits = load_digits()
x = torch.tensor(digits.images, dtype=torch.float64).reshape(-1, 64) / 8.0 - 1.0
y = torch.tensor(digits.target, dtype=torch.int64)
means = torch.stack([x[y == k].mean(0) for k in range(10)])
variances = torch.stack([x[y == k].var(0) for k in range(10)]).clamp_min(VAR_FLOOR)
weights = torch.stack([(y == k).double().mean() for k in range(10)])
out = Path(__file__).resolve().parents[1] / "s4s_export" / "assets" / "gmm_digits.safetensors"
save_file({"means": means, "variances": variances, "weights": weights, "classes": torch.arange(10)}, str(out),
          metadata={"shape": json.dumps([1, 8, 8]),
                    "source": "sklearn.datasets.load_digits, per-class mean and variance"})
print(f"wrote {out} ({out.stat().st_size} bytes)")
