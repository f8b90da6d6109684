"""Train the digits classifier behind `--metric fd-digits` (s4s_export/fd_digits.py) and ship its weights.

    python scripts/train_digits_classifier.py      # writes s4s_export/assets/digits_classifier.safetensors

Data: sklearn's digits in the demo model's space (`digits_16x16`), split by `held_out_split` (seeded, 20%
held out). Adam, cross-entropy, a few epochs with small random shifts (+-1 pixel) as augmentation; seeded,
CPU only, one thread. The held-out accuracy and the recipe go into the safetensors metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s4s_export.fd_digits import (
    CLASSIFIER_ASSET,
    DigitsClassifier,
    digits_16x16,
    held_out_split,
)


def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The batch moved by -1..1 pixels in each direction (background -1 fills in)."""
    dy, dx = (torch.randint(-1, 2, (2,), generator=gen)).tolist()
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    return padded[:, :, 1 + dy : 1 + dy + x.shape[2], 1 + dx : 1 + dx + x.shape[3]]


@torch.no_grad()
def accuracy(net: DigitsClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((net(x).argmax(1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=CLASSIFIER_ASSET)
    args = ap.parse_args()
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    x, y = digits_16x16()
    train_idx, test_idx = (torch.as_tensor(i) for i in held_out_split(len(x)))
    net = DigitsClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    gen = torch.Generator().manual_seed(args.seed + 1)
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        for idx in train_idx[torch.randperm(len(train_idx), generator=gen)].split(args.batch):
            loss = F.cross_entropy(net(shift(x[idx], gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        net.eval()
        print(f"epoch {epoch + 1}: loss {float(loss):.4f}  "
              f"held-out accuracy {accuracy(net, x[test_idx], y[test_idx]):.4f}", flush=True)
    acc = accuracy(net, x[test_idx], y[test_idx])
    record = {"held_out_accuracy": acc, "held_out_samples": len(test_idx), "train_samples": len(train_idx),
              "train_accuracy": accuracy(net, x[train_idx], y[train_idx]), "epochs": args.epochs, "batch": args.batch,
              "lr": args.lr, "lr_schedule": "cosine", "augmentation": "random shift of -1..1 pixels per batch",
              "seed": args.seed, "wall_s": round(time.time() - t0, 1), "torch": torch.__version__,
              "dataset": "sklearn.datasets.load_digits -> s4s_export.fd_digits.digits_16x16, split held_out_split"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(args.out),
              metadata={"training": json.dumps(record)})
    print(json.dumps(record, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
