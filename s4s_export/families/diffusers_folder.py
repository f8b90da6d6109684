"""`diffusers:PATH` model references: a local diffusers pipeline or model folder as an EDM denoiser.

A pipeline folder has model_index.json with unet/ or transformer/, scheduler/, and optionally vae/
or vqvae/ (latent models); a bare model folder (config.json with `_class_name`) needs a
scheduler_config.json beside it or in scheduler/. Checking parses JSON only (no torch). Loading
reads safetensors weights only (`use_safetensors=True`): .bin pickles are refused, never unpickled.
The scheduler config picks the adapter: FlowMatch* schedulers -> families/flow.py, the others
(DDPM, DDIM, PNDM, Euler, DPM-Solver, ...) -> families/vp.py with their prediction_type.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import S4SError

if TYPE_CHECKING:
    from ..denoiser import Denoiser
    from ..models import ModelSpec

EXTRA_HINT = "pip install 's4s-export[diffusers]'"
NETWORKS = {  # class -> conditioning
    "UNet2DModel": "none",
    "UNet2DConditionModel": "text",
    "DiTTransformer2DModel": "class",
    "SD3Transformer2DModel": "text",
}
NETWORK_DIRS = ("unet", "transformer")
DECODER_DIRS = ("vae", "vqvae")
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise S4SError(f"cannot read {path}: {e}; the diffusers folder is damaged, save it again with save_pretrained")
    if not isinstance(doc, dict):
        raise S4SError(f"{path} is not a JSON object; the diffusers folder is damaged, save it again with "
                       "save_pretrained")
    return doc


class DiffusersFolder:
    """The parsed layout of a diffusers folder: network, scheduler and optional decoder configs (JSON only)."""

    def __init__(self, target: str):
        root = Path(target).expanduser()
        if not root.is_dir():
            raise S4SError(f"diffusers folder not found: {target}; --model diffusers:PATH takes a local folder written "
                           f"by save_pretrained (model_index.json with unet/ or transformer/ and scheduler/)")
        self.root = root
        self.decoder_dir: Path | None = None
        if (root / "model_index.json").is_file():
            _read_json(root / "model_index.json")
            nets = [root / d for d in NETWORK_DIRS if (root / d / "config.json").is_file()]
            if not nets:
                raise S4SError(f"{root} has model_index.json but no unet/ or transformer/ with config.json; "
                               f"point diffusers:PATH at a diffusion pipeline folder")
            self.net_dir = nets[0]
            self.decoder_dir = next((root / d for d in DECODER_DIRS if (root / d / "config.json").is_file()), None)
            sched = root / "scheduler" / "scheduler_config.json"
        elif (root / "config.json").is_file():
            self.net_dir = root
            sched = next((p for p in (root / "scheduler_config.json", root / "scheduler" / "scheduler_config.json",
                                      root.parent / "scheduler" / "scheduler_config.json") if p.is_file()), None)
        else:
            raise S4SError(f"{root} is not a diffusers model: it has neither model_index.json nor config.json; "
                           f"save the pipeline or model with save_pretrained")
        self.net_config = _read_json(self.net_dir / "config.json")
        self.net_class = str(self.net_config.get("_class_name", ""))
        if self.net_class not in NETWORKS:
            raise S4SError(f"unsupported diffusers network class {self.net_class or '(none)'!r} in {self.net_dir}; "
                           f"supported: {', '.join(NETWORKS)}")
        if sched is None or not sched.is_file():
            raise S4SError(f"no scheduler config for {root}: add scheduler/scheduler_config.json (the training "
                           f"schedule decides the sigma mapping)")
        self.scheduler_config = _read_json(sched)
        self.scheduler_class = str(self.scheduler_config.get("_class_name", ""))
        self.decoder_config = _read_json(self.decoder_dir / "config.json") if self.decoder_dir else None

    @property
    def flow(self) -> bool:
        return self.scheduler_class.startswith("FlowMatch")

    @property
    def conditioning(self) -> str:
        if self.net_class == "UNet2DModel" and self.net_config.get("num_class_embeds"):
            return "class"
        return NETWORKS[self.net_class]

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = self.net_config.get("sample_size", 64)
        h, w = (size, size) if isinstance(size, int) else size
        return int(self.net_config.get("in_channels", 4)), int(h), int(w)

    def require_weights(self, directory: Path) -> None:
        if not any((directory / w).is_file() for w in WEIGHTS):
            has_bin = (directory / "diffusion_pytorch_model.bin").is_file()
            why = "has only pickled .bin weights, which are never loaded here" if has_bin else "has no weights"
            raise S4SError(f"{directory} {why}; save it with save_pretrained(safe_serialization=True) to get "
                           f"diffusion_pytorch_model.safetensors, or pass --random-weights")


def _check_options(ref: Any) -> None:
    if getattr(ref, "checkpoint", None):
        raise S4SError("--checkpoint does not apply to diffusers:PATH; the folder holds the weights")
    if getattr(ref, "config", None):
        raise S4SError("--config does not apply to diffusers:PATH; the folder holds its configs")


def check_diffusers(ref: Any) -> ModelSpec:
    """Validate a `diffusers:PATH` reference without torch and describe it as a ModelSpec."""
    from ..models import ModelSpec

    _check_options(ref)
    folder = DiffusersFolder(ref.target)
    if not getattr(ref, "random_weights", False):
        folder.require_weights(folder.net_dir)
        if folder.decoder_dir is not None:
            folder.require_weights(folder.decoder_dir)
    kind = "flow" if folder.flow else f"VP {folder.scheduler_config.get('prediction_type', 'epsilon')}"
    latent = f", latent ({folder.decoder_config['_class_name']})" if folder.decoder_config else ""
    return ModelSpec(
        name=f"diffusers:{ref.target}",
        description=f"diffusers {folder.net_class} ({kind}{latent}) from {folder.root}",
        resolution="x".join(map(str, folder.latent_shape)),
        conditioning=folder.conditioning,
        load=lambda **_: load_diffusers(ref),
        available=lambda: True,
        schedule="logsnr",
    )


def import_diffusers() -> Any:
    """diffusers with its and transformers' notices (missing accelerate/torchvision, progress bars) silenced,
    so that stderr carries only this package's log and one-line errors."""
    for var in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY"):
        os.environ.setdefault(var, "error")
    try:
        import diffusers
    except ImportError:
        raise S4SError(f"diffusers models need the diffusers and transformers packages: {EXTRA_HINT}") from None
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    with contextlib.suppress(ImportError):  # transformers is needed for text encoders only
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    return diffusers


def _load_module(diffusers: Any, directory: Path, config: dict, random_weights: bool) -> Any:
    cls = getattr(diffusers, config["_class_name"], None)
    if cls is None:
        raise S4SError(f"diffusers {diffusers.__version__} has no class {config['_class_name']!r} ({directory}); "
                       f"upgrade diffusers")
    if random_weights:
        return cls.from_config(cls.load_config(directory))
    return cls.from_pretrained(directory, use_safetensors=True)


def load_diffusers(ref: Any, guidance_scale: float = 1.0) -> Denoiser:
    """Load `diffusers:PATH` as a VP or flow denoiser (eval mode, no gradients), with its latent decoder if any."""
    from ..denoiser import ModelInfo
    from .flow import FlowDenoiser, flow_sigma_range
    from .latent import LatentDecoder
    from .networks import wrap_network
    from .vp import VPDenoiser, VPSchedule

    _check_options(ref)
    folder = DiffusersFolder(ref.target)
    random_weights = bool(getattr(ref, "random_weights", False))
    if not random_weights:
        folder.require_weights(folder.net_dir)
    diffusers = import_diffusers()
    net = wrap_network(_load_module(diffusers, folder.net_dir, folder.net_config, random_weights))
    decoder = None
    if folder.decoder_dir is not None:
        if not random_weights:
            folder.require_weights(folder.decoder_dir)
        decoder = LatentDecoder(_load_module(diffusers, folder.decoder_dir, folder.decoder_config, random_weights))
    shape = folder.latent_shape
    common = dict(name=f"diffusers:{ref.target}", shape=shape, conditioning=folder.conditioning,
                  num_classes=net.num_classes, sigma_data=1.0,
                  description=f"diffusers {folder.net_class} from {folder.root}",
                  decodes_to=decoder.decoded_shape(shape) if decoder else None)
    if folder.flow:
        sigma_min, sigma_max = flow_sigma_range(folder.scheduler_config)
        info = ModelInfo(sigma_min=sigma_min, sigma_max=sigma_max, space="flow", **common)
        model = FlowDenoiser(net, info, int(folder.scheduler_config.get("num_train_timesteps", 1000)), guidance_scale)
    else:
        schedule = VPSchedule.from_config(folder.scheduler_config)
        info = ModelInfo(sigma_min=schedule.sigma_min, sigma_max=schedule.sigma_max, space="vp", **common)
        model = VPDenoiser(net, schedule, folder.scheduler_config.get("prediction_type", "epsilon"), info,
                           guidance_scale)
    model.decoder = decoder
    return model.eval().requires_grad_(False)
