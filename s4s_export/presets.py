"""Checkpoint presets: the official NVlabs/edm pixel models (docs/models.md), usable as `--model NAME`.

Weights resolve in this order: `--checkpoint PATH`, the cache (`s4s_export.cache`), a download.
`--random-weights` builds the preset's exact architecture with seeded random weights instead
(an "architecture twin", named `<preset>-twin` in every output).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import OFFLINE_ENV, DownloadError, cache_dir, check_cached, download, is_offline
from .errors import S4SError
from .netspec import NetworkSpec
from .teacher import DEFAULT_NET_TEACHER, TeacherSpec

if TYPE_CHECKING:  # torch loads only when a network is built (the CLI checks arguments first)
    import torch

    from .denoiser import Denoiser

EDM_URL = "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/"

# Constructor kwargs of the official pickles (NVlabs/edm train.py options).
# A pickle's own recorded kwargs are authoritative; these build twins and plain state dicts.
DDPMPP = dict(model_type="SongUNet", model_channels=128, augment_dim=9, embedding_type="positional",
              encoder_type="standard", decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1],
              use_fp16=False)
NCSNPP = dict(DDPMPP, embedding_type="fourier", encoder_type="residual", channel_mult_noise=2,
              resample_filter=[1, 3, 3, 1])
CIFAR10 = dict(img_resolution=32, img_channels=3, channel_mult=[2, 2, 2], dropout=0.13)
FFHQ = dict(img_resolution=64, img_channels=3, channel_mult=[1, 2, 2, 2], dropout=0.05)
AFHQV2 = dict(FFHQ, dropout=0.25)
ADM = dict(img_resolution=64, img_channels=3, model_type="DhariwalUNet", model_channels=192,
           channel_mult=[1, 2, 3, 4], dropout=0.10, use_fp16=True)

TWIN_SEED = 0
# EDM zero-initialises its output layers, so an EDM-initialised net gives D ~= c_skip * x. Twins add
# N(0, TWIN_NOISE^2) to every parameter so the whole network shapes the output.
TWIN_NOISE = 0.05


@dataclass(frozen=True)
class Preset:
    """One official checkpoint: where it comes from, its architecture and its sampling defaults."""

    name: str
    title: str
    url: str
    network: NetworkSpec
    heun_nfe: int  # EDM's deterministic Heun sampler (35 at 32x32, 79 at 64x64): the `heun:N:edm` teacher option
    sha256: str | None = None  # unknown for the official files: recorded on first download, re-checked on use
    teacher: TeacherSpec = DEFAULT_NET_TEACHER
    schedule: str = "logsnr"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def shape(self) -> tuple[int, int, int]:
        kw = self.network.init_kwargs
        return kw["img_channels"], kw["img_resolution"], kw["img_resolution"]

    @property
    def resolution(self) -> str:
        return "x".join(map(str, self.shape))

    @property
    def conditioning(self) -> str:
        return "class" if self.network.init_kwargs.get("label_dim") else "none"

    @property
    def description(self) -> str:
        return f"{self.title} (EDM sampler heun:{self.heun_nfe}:edm)"

    def cache_path(self) -> Path:
        return cache_dir() / self.filename

    def is_cached(self) -> bool:
        return self.cache_path().is_file()

    def weights_path(self) -> Path:
        """The cached file, downloading it first when allowed; fails fast with a placement hint."""
        dest = self.cache_path()
        if dest.is_file():
            return check_cached(dest)
        hint = (f"download {self.url} and save it as {dest}, or pass --checkpoint PATH "
                f"(--random-weights runs the architecture with random weights)")
        if is_offline():
            raise S4SError(f"model {self.name!r} needs {self.filename}, which is not in the cache "
                           f"({OFFLINE_ENV} is set): {hint}")
        try:
            return download(self.url, dest, self.sha256)
        except DownloadError as e:
            raise S4SError(f"model {self.name!r} needs {self.filename} and the download failed ({e}): {hint}") from None

    def reference_state(self) -> dict[str, torch.Tensor]:
        """Names and shapes of this architecture's state dict (meta tensors, no memory)."""
        import torch

        with torch.device("meta"):
            return self.network.build().state_dict()

    def twin(self, seed: int = TWIN_SEED) -> Denoiser:
        """The exact architecture with seeded random weights, named `<name>-twin`."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self.network.build(f"{self.name}-twin")
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(torch.randn_like(p), alpha=TWIN_NOISE)
        net.info = dataclasses.replace(
            net.info, description=f"architecture twin of {self.name}: random weights (seed {seed}), not the trained "
                                  f"{self.title}")
        return net.eval().requires_grad_(False)

    def load(self, checkpoint: str | Path | None = None, random_weights: bool = False) -> Denoiser:
        """The trained network (from `checkpoint` or the cache/download), or its twin."""
        from .checkpoints import architecture_mismatch, build_loaded, checkpoint_contents

        if checkpoint is not None and random_weights:
            raise S4SError("--checkpoint and --random-weights exclude each other: give one")
        if random_weights:
            return self.twin()
        path = Path(checkpoint) if checkpoint is not None else self.weights_path()
        recorded, tensors = checkpoint_contents(path)
        if recorded is not None and recorded.class_name != self.network.class_name:
            # a VPPrecond DDPM++ has an EDMPrecond's tensors, but other preconditioning: not this preset
            raise S4SError(f"{path} holds a {recorded.class_name} network, not the {self.network.class_name} of "
                           f"{self.name} ({self.title}); load it from Python with "
                           "s4s_export.checkpoints.load_checkpoint (docs/models.md), or choose its matching --model")
        problem = architecture_mismatch(self.reference_state(), tensors)
        if problem:
            raise S4SError(f"{path} is not a {self.name} checkpoint ({self.title}): {problem}; "
                           f"choose the matching --model (see `s4s-export models`)")
        net = build_loaded(recorded or self.network, tensors, self.name, path.name)
        net.info = dataclasses.replace(net.info, description=f"{self.title}, weights from {path.name}")
        return net


def _edm(name: str, title: str, file: str, arch: dict, heun_nfe: int, label_dim: int = 0) -> Preset:
    return Preset(name, title, EDM_URL + file, NetworkSpec("EDMPrecond", dict(arch, label_dim=label_dim)), heun_nfe)


PRESETS: dict[str, Preset] = {p.name: p for p in [
    _edm("cifar10", "EDM CIFAR-10 32x32 uncond DDPM++", "edm-cifar10-32x32-uncond-vp.pkl",
         dict(CIFAR10, **DDPMPP), 35),
    _edm("cifar10-cond", "EDM CIFAR-10 32x32 cond DDPM++", "edm-cifar10-32x32-cond-vp.pkl",
         dict(CIFAR10, **DDPMPP), 35, label_dim=10),
    _edm("cifar10-ve", "EDM CIFAR-10 32x32 uncond NCSN++", "edm-cifar10-32x32-uncond-ve.pkl",
         dict(CIFAR10, **NCSNPP), 35),
    _edm("cifar10-cond-ve", "EDM CIFAR-10 32x32 cond NCSN++", "edm-cifar10-32x32-cond-ve.pkl",
         dict(CIFAR10, **NCSNPP), 35, label_dim=10),
    _edm("ffhq", "EDM FFHQ 64x64 DDPM++", "edm-ffhq-64x64-uncond-vp.pkl", dict(FFHQ, **DDPMPP), 79),
    _edm("ffhq-ve", "EDM FFHQ 64x64 NCSN++", "edm-ffhq-64x64-uncond-ve.pkl", dict(FFHQ, **NCSNPP), 79),
    _edm("afhqv2", "EDM AFHQv2 64x64 DDPM++", "edm-afhqv2-64x64-uncond-vp.pkl",
         dict(AFHQV2, **DDPMPP), 79),
    _edm("afhqv2-ve", "EDM AFHQv2 64x64 NCSN++", "edm-afhqv2-64x64-uncond-ve.pkl",
         dict(AFHQV2, **NCSNPP), 79),
    _edm("imagenet64", "EDM ImageNet 64x64 cond ADM", "edm-imagenet-64x64-cond-adm.pkl", ADM, 79,
         label_dim=1000),
]}
