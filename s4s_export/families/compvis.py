"""`compvis:PATH.ckpt --config PATH.yaml`: CompVis LatentDiffusion checkpoints as VP denoisers on latents.

Nothing from the checkpoint or the config runs: the `.ckpt` is read with torch's weights-only
unpickler (PyTorch Lightning's callback classes resolve to inert placeholders), only its
`state_dict` is used, and the YAML is parsed with `yaml.safe_load`; its `target:` class names are
matched against the known CompVis ones and mapped to diffusers classes, never imported.

Covered (docs/models.md "CompVis LatentDiffusion checkpoints"):
- `LatentDiffusion` with eps parameterization and the "linear" beta schedule (CompVis's
  `make_beta_schedule`: linspace(sqrt(start), sqrt(end), T)^2, i.e. diffusers' `scaled_linear`);
- UNet `openaimodel.UNetModel`, either with `use_spatial_transformer: true` and `num_heads` (-> diffusers
  `UNet2DConditionModel`, converted with diffusers' `convert_ldm_unet_checkpoint`; cin256-v2), or with
  legacy `AttentionBlock`s and `num_head_channels` (-> diffusers `UNet2DModel`, attention qkv split
  per head; LSUN-Bedroom);
- first stage `VQModelInterface`/`VQModel` (-> diffusers `VQModel`, decoding quantises) or `AutoencoderKL`
  (-> diffusers `AutoencoderKL`), both converted with diffusers' `convert_ldm_vae_checkpoint`;
- conditioning `__is_unconditional__` or `ClassEmbedder` (context [B, 1, D] = embedding(label); the
  null label is n_classes - 1, 1000 for cin256-v2) with classifier-free guidance eps_u + s (eps_c - eps_u).
Loading is strict: every `model.diffusion_model.*` (or its `model_ema.*` copy), `first_stage_model.*`
and `cond_stage_model.*` tensor is used, and every network weight is given.
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import S4SError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..denoiser import Denoiser
    from ..models import ModelSpec
    from .pyfactory import ModelReference

LATENT_DIFFUSION = "ldm.models.diffusion.ddpm.LatentDiffusion"
UNET = "ldm.modules.diffusionmodules.openaimodel.UNetModel"
FIRST_STAGES = {"ldm.models.autoencoder.VQModelInterface": "vq", "ldm.models.autoencoder.VQModel": "vq",
                "ldm.models.autoencoder.AutoencoderKL": "kl"}
CLASS_EMBEDDER = "ldm.modules.encoders.modules.ClassEmbedder"
UNCONDITIONAL = "__is_unconditional__"
UNET_PREFIX, FIRST_STAGE_PREFIX, COND_PREFIX, EMA_PREFIX = ("model.diffusion_model.", "first_stage_model.",
                                                           "cond_stage_model.", "model_ema.")
# LatentDiffusion's registered buffers (ldm/models/diffusion/ddpm.py register_schedule and __init__): data, not weights.
SCHEDULE_BUFFERS = frozenset({
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "lvlb_weights", "logvar", "scale_factor", "cond_ids", "model_ema.decay", "model_ema.num_updates"
})
# UNetModel arguments whose non-default values these conversions do not express.
UNSUPPORTED_UNET_ARGS = {"dims": 2, "num_classes": None, "use_scale_shift_norm": False, "resblock_updown": False,
                         "use_new_attention_order": False, "conv_resample": True, "legacy": True, "n_embed": None,
                         "num_heads_upsample": -1}
LIGHTNING_CALLBACKS = ("pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
                       "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint")
INSTALL = "pip install 's4s-export[diffusers]'"
CONFIG_HINT = "the CompVis config YAML it was trained with, e.g. configs/latent-diffusion/cin256-v2.yaml"


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CompVisConfig:
    """What a CompVis LatentDiffusion YAML says, checked against what this loader covers."""

    unet: dict
    first_stage: str  # "vq" | "kl"
    ddconfig: dict
    embed_dim: int
    n_embed: int  # VQ codebook size (0 for KL)
    n_classes: int  # ClassEmbedder rows including the null row; 0: unconditional
    context_dim: int
    linear_start: float
    linear_end: float
    timesteps: int
    scale_factor: float
    use_ema: bool
    channels: int
    image_size: int

    @property
    def spatial_transformer(self) -> bool:
        return bool(self.unet.get("use_spatial_transformer", False))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def decodes_to(self) -> tuple[int, int, int]:
        f = 2 ** (len(self.ddconfig["ch_mult"]) - 1)
        return (int(self.ddconfig["out_ch"]), self.image_size * f, self.image_size * f)


def _require_yaml():
    try:
        import yaml
    except ImportError:
        raise S4SError(f"reading a CompVis config needs PyYAML; install it with {INSTALL}") from None
    return yaml


def _section(d: object, key: str, where: str) -> dict:
    value = d.get(key) if isinstance(d, dict) else None
    if not isinstance(value, dict):
        raise S4SError(f"{where} has no '{key}' mapping; pass {CONFIG_HINT}")
    return value


def _target(section: dict, known: set[str] | dict, what: str, where: str) -> str:
    target = section.get("target")
    if target not in known:
        raise S4SError(f"{where}: {what} target {target!r} is not supported (supported: {', '.join(sorted(known))}); "
                       f"see docs/models.md for the CompVis models this loader covers")
    return target


def parse_config(path: str | Path) -> CompVisConfig:
    """Read and check a CompVis LatentDiffusion YAML (safe_load; targets are matched, never imported)."""
    yaml = _require_yaml()
    path = Path(path)
    if not path.is_file():
        raise S4SError(f"config file not found: {path}; pass {CONFIG_HINT}")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise S4SError(f"{path} is not readable YAML ({str(e).splitlines()[0]}); pass {CONFIG_HINT}") from None
    where = str(path)
    model = _section(raw, "model", where)
    _target(model, {LATENT_DIFFUSION}, "model", where)
    p = _section(model, "params", where)
    if p.get("parameterization", "eps") != "eps":
        raise S4SError(f"{where}: parameterization {p['parameterization']!r} is not supported; only 'eps' (the "
                       f"CompVis default) is")
    if p.get("beta_schedule", "linear") != "linear" or p.get("given_betas") is not None:
        raise S4SError(f"{where}: only CompVis's default 'linear' beta schedule is supported")
    unet_cfg = _section(p, "unet_config", where)
    _target(unet_cfg, {UNET}, "unet_config", where)
    unet = dict(_section(unet_cfg, "params", where + " unet_config"))
    for arg, default in UNSUPPORTED_UNET_ARGS.items():
        if unet.get(arg, default) != default:
            raise S4SError(f"{where}: UNetModel {arg}={unet[arg]!r} is not supported (only {default!r})")
    fs_cfg = _section(p, "first_stage_config", where)
    first_stage = FIRST_STAGES[_target(fs_cfg, FIRST_STAGES, "first_stage_config", where)]
    fs = _section(fs_cfg, "params", where + " first_stage_config")
    dd = _section(fs, "ddconfig", where + " first_stage_config")
    if dd.get("attn_resolutions"):
        raise S4SError(f"{where}: a first stage with attn_resolutions {dd['attn_resolutions']} is not supported "
                       f"(diffusers' VQModel/AutoencoderKL have attention only in the middle block)")
    if first_stage == "vq" and fs.get("remap") is not None:
        raise S4SError(f"{where}: a VQ first stage with 'remap' is not supported")
    cond = p.get("cond_stage_config")
    n_classes = context_dim = 0
    if cond == UNCONDITIONAL:
        if unet.get("use_spatial_transformer") or unet.get("context_dim") is not None:
            raise S4SError(f"{where}: an unconditional model with a cross-attention UNet is not supported")
    elif isinstance(cond, dict):
        _target(cond, {CLASS_EMBEDDER}, "cond_stage_config", where)
        if p.get("conditioning_key") != "crossattn" or not unet.get("use_spatial_transformer"):
            raise S4SError(f"{where}: a ClassEmbedder is supported with conditioning_key crossattn and a "
                           f"use_spatial_transformer UNet only")
        cp = cond.get("params", {})
        n_classes, context_dim = int(cp.get("n_classes", 1000)), int(cp.get("embed_dim", 0))
        if context_dim != unet.get("context_dim"):
            raise S4SError(f"{where}: ClassEmbedder embed_dim {context_dim} differs from the UNet context_dim "
                           f"{unet.get('context_dim')}")
    else:
        raise S4SError(f"{where}: cond_stage_config {cond!r} is not supported (use {UNCONDITIONAL} or a "
                       f"ClassEmbedder; text-conditioned CompVis models are not covered)")
    if unet.get("use_spatial_transformer"):
        if unet.get("num_heads", -1) == -1 or unet.get("num_head_channels", -1) != -1:
            raise S4SError(f"{where}: a spatial-transformer UNet is supported with num_heads (and no "
                           f"num_head_channels) only")
        if int(unet.get("transformer_depth", 1)) < 1:
            raise S4SError(f"{where}: transformer_depth must be at least 1")
    elif unet.get("num_head_channels", -1) == -1:
        raise S4SError(f"{where}: an AttentionBlock UNet is supported with num_head_channels (and no num_heads) only")
    try:
        return CompVisConfig(
            unet=unet, first_stage=first_stage, ddconfig=dict(dd), embed_dim=int(fs["embed_dim"]),
            n_embed=int(fs["n_embed"]) if first_stage == "vq" else 0, n_classes=n_classes, context_dim=context_dim,
            linear_start=float(p.get("linear_start", 1e-4)), linear_end=float(p.get("linear_end", 2e-2)),
            timesteps=int(p.get("timesteps", 1000)), scale_factor=float(p.get("scale_factor", 1.0)),
            use_ema=bool(p.get("use_ema", True)), channels=int(p.get("channels", 3)),
            image_size=int(p.get("image_size", 256)))
    except (KeyError, TypeError, ValueError) as e:
        raise S4SError(f"{where}: a required CompVis setting is missing or not a number ({e})") from None


# ---------------------------------------------------------------------------------------------- checkpoint


class LightningCallback:
    """Inert stand-in for PyTorch Lightning's ModelCheckpoint class (a key of a checkpoint's `callbacks`)."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning `.ckpt` (or a bare state dict), read without running code from the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise S4SError(f"checkpoint file not found: {path}")
    stand_ins = [(LightningCallback, name) for name in LIGHTNING_CALLBACKS]
    try:
        with torch.serialization.safe_globals(stand_ins):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"unsupported global:? (?:GLOBAL )?(\S+)", str(e), re.IGNORECASE)
        what = f"it refers to {found.group(1)}" if found else "torch's weights-only loader rejected it"
        raise S4SError(f"refusing to load {path}: {what}, which no CompVis checkpoint's weights need (loading never "
                       f"runs code from a file; re-save it with torch.save({{'state_dict': ...}}))") from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise S4SError(f"{path} is not a readable torch checkpoint: {str(e).splitlines()[0]}") from None
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping):
        raise S4SError(f"{path} holds no state_dict; a CompVis .ckpt is a Lightning dict with 'state_dict'")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise S4SError(f"{path}: state_dict entries {', '.join(map(repr, bad[:3]))} are not name -> tensor")
    return dict(state)


def _ema_substituted(state: dict[str, torch.Tensor], use_ema: bool) -> dict[str, torch.Tensor]:
    """UNet weights as CompVis samples them: the `model_ema.*` copies (LitEma strips dots) when present and enabled."""
    ema = {k for k in state if k.startswith(EMA_PREFIX) and k not in SCHEDULE_BUFFERS}
    if not ema:
        return state
    if not use_ema:
        raise S4SError(f"the checkpoint has {len(ema)} model_ema.* tensors but the config sets use_ema: false; "
                       f"use the config the checkpoint was trained with")
    out = {k: v for k, v in state.items() if not k.startswith(EMA_PREFIX) or k in SCHEDULE_BUFFERS}
    unet = [k for k in out if k.startswith(UNET_PREFIX)]
    flat = {EMA_PREFIX + "diffusion_model" + k.removeprefix(UNET_PREFIX).replace(".", ""): k for k in unet}
    missing, unexpected = [f for f in flat if f not in ema], sorted(ema - flat.keys())
    if missing or unexpected:
        problem = (_few("missing", missing) + _few("unexpected", unexpected)).rstrip("; ")
        raise S4SError(f"the checkpoint's model_ema.* tensors do not match its UNet ({problem})")
    out.update({k: state[f] for f, k in flat.items()})
    return out


def _names(keys: list[str]) -> str:
    """`a, b, c (+4 more)`."""
    more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
    return f"{', '.join(keys[:3])}{more}"


def _few(what: str, keys: list[str]) -> str:
    """`what: a, b, c (+4 more); ` or nothing for no keys."""
    return f"{what}: {_names(keys)}; " if keys else ""


# ---------------------------------------------------------------------------------------------- networks


def _require_diffusers():
    from .diffusers_folder import import_diffusers

    try:
        import diffusers
        from diffusers.loaders import single_file_utils
    except ImportError:
        raise S4SError("CompVis checkpoints are rebuilt with diffusers' classes; install them with "
                       f"{INSTALL}") from None
    import_diffusers()  # its notices silenced
    return diffusers, single_file_utils


def _unet_config_dict(cfg: CompVisConfig) -> dict:
    """The config dict diffusers' converters read (`model.params.{unet,first_stage}_config.params`)."""
    unet = {"transformer_depth": 1, "context_dim": None, **cfg.unet}
    return {"model": {"params": {"unet_config": {"params": unet},
                                 "first_stage_config": {"params": {"ddconfig": cfg.ddconfig}},
                                 "scale_factor": cfg.scale_factor}}}


def _attention_unet_config(cfg: CompVisConfig) -> dict:
    """diffusers UNet2DModel config for a CompVis UNetModel with legacy AttentionBlocks (num_head_channels)."""
    u = cfg.unet
    channels = [u["model_channels"] * m for m in u["channel_mult"]]
    attn = set(u["attention_resolutions"])
    ds = [2**i for i in range(len(channels))]
    return {
        "sample_size": u.get("image_size", cfg.image_size), "in_channels": u["in_channels"],
        "out_channels": u["out_channels"], "block_out_channels": channels, "layers_per_block": u["num_res_blocks"],
        "down_block_types": ["AttnDownBlock2D" if d in attn else "DownBlock2D" for d in ds],
        "up_block_types": ["AttnUpBlock2D" if d in attn else "UpBlock2D" for d in reversed(ds)],
        "attention_head_dim": u["num_head_channels"], "norm_num_groups": 32, "norm_eps": 1e-5,
        "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1, "add_attention": True,
    }


ATTENTION_BLOCK_KEY = re.compile(r"^(.*attentions\.\d+)\.(norm|qkv|proj_out)\.(weight|bias)$")


def _split_attention_blocks(converted: dict[str, torch.Tensor], head_channels: int
                            ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """CompVis AttentionBlock (norm, qkv conv1d, proj_out conv1d) -> diffusers Attention (group_norm, to_q/k/v, to_out).

    QKVAttentionLegacy reshapes qkv to [B*heads, 3*d, T] (ldm/modules/diffusionmodules/openaimodel.py), so each
    head's q, k and v rows are contiguous: rows (head, {q,k,v}, d). Returns the weights and the qkv tensors split.
    """
    out, split = {}, []
    for key, value in converted.items():
        m = ATTENTION_BLOCK_KEY.match(key)
        if m is None:
            out[key] = value
            continue
        base, part, kind = m.groups()
        if part == "norm":
            out[f"{base}.group_norm.{kind}"] = value
        elif part == "proj_out":
            out[f"{base}.to_out.0.{kind}"] = value[..., 0] if kind == "weight" else value
        else:
            split.append(value)
            channels = value.shape[0] // 3
            per_head = value.reshape(channels // head_channels, 3, head_channels, *value.shape[1:])
            for i, name in enumerate(("to_q", "to_k", "to_v")):
                w = per_head[:, i].reshape(channels, *value.shape[1:])
                out[f"{base}.{name}.{kind}"] = w[..., 0] if kind == "weight" else w
    return out, split


def _prefixed(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def _load_strict(module: nn.Module, weights: dict[str, torch.Tensor], source: dict[str, torch.Tensor],
                 what: str, consumed: tuple[torch.Tensor, ...] | list[torch.Tensor] = ()) -> None:
    """Every network weight given (right shape) and every source tensor used, else a one-line error.

    A source tensor counts as used when it, or the tensor it is a view of, is a weight or in `consumed`.
    """
    expected = module.state_dict()
    used = {id(t if t._base is None else t._base) for t in [*weights.values(), *consumed]}
    unused = [k for k, t in source.items() if id(t) not in used]
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    shapes = [k for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)]
    problem = (_few("unexpected checkpoint tensors", unused) + _few("missing network weights", missing)
               + _few("unconverted", extra) + _few("shape differs for", shapes))
    if problem:
        raise S4SError(f"the checkpoint's {what} does not fit the config: {problem.rstrip('; ')}; pass the config "
                       f"the checkpoint was trained with")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in weights.items()}, strict=True)


def build_unet(cfg: CompVisConfig, state: dict[str, torch.Tensor]) -> nn.Module:
    """The diffusers UNet for `cfg`, with the checkpoint's `model.diffusion_model.*` weights (strict)."""
    diffusers, sfu = _require_diffusers()
    source = _prefixed(state, UNET_PREFIX)
    if cfg.spatial_transformer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # diffusers deprecates passing image_size
            config = sfu.create_unet_diffusers_config_from_ldm(_unet_config_dict(cfg), source,
                                                               image_size=cfg.decodes_to[1])
        unet = diffusers.UNet2DConditionModel(**config)
        weights, consumed = sfu.convert_ldm_unet_checkpoint(source, config), []
    else:
        config = _attention_unet_config(cfg)
        unet = diffusers.UNet2DModel(**config)
        weights, consumed = _split_attention_blocks(sfu.convert_ldm_unet_checkpoint(source, config),
                                                    cfg.unet["num_head_channels"])
    _load_strict(unet, weights, source, "UNet (model.diffusion_model.*)", consumed)
    return unet


def build_first_stage(cfg: CompVisConfig, state: dict[str, torch.Tensor]) -> nn.Module:
    """diffusers VQModel / AutoencoderKL for the first stage, with `first_stage_model.*` weights (strict)."""
    diffusers, sfu = _require_diffusers()
    source = _prefixed(state, FIRST_STAGE_PREFIX)
    dd = cfg.ddconfig
    if dd.get("double_z", True) != (cfg.first_stage == "kl"):
        raise S4SError(f"first stage ddconfig double_z={dd.get('double_z', True)} does not fit a "
                       f"{cfg.first_stage.upper()} first stage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # diffusers deprecates passing image_size
        config = sfu.create_vae_diffusers_config_from_ldm(_unet_config_dict(cfg), source,
                                                         image_size=cfg.decodes_to[1], scaling_factor=cfg.scale_factor)
    weights = sfu.convert_ldm_vae_checkpoint(source, config)
    if cfg.first_stage == "vq":
        config.update(num_vq_embeddings=cfg.n_embed, vq_embed_dim=cfg.embed_dim)
        codebook = FIRST_STAGE_PREFIX + "quantize.embedding.weight"
        if codebook in source:
            weights["quantize.embedding.weight"] = source[codebook]
        model = diffusers.VQModel(**config)
    else:
        model = diffusers.AutoencoderKL(**config)
    _load_strict(model, weights, source, "first stage (first_stage_model.*)")
    return model


# ---------------------------------------------------------------------------------------------- denoiser


@functools.cache
def _eps_net_class() -> type:
    """CompVisEpsNet, defined on first use so that `check_compvis` needs no torch."""
    import torch
    from torch import nn

    from .guidance import ClassCond

    class CompVisEpsNet(nn.Module):
        """eps(x_t, t, cond) of a CompVis LDM: its UNet, with the ClassEmbedder context [B, 1, D] for class models.

        cond: None (the null label: unconditional), int64 labels [B] or `ClassCond` (families/guidance.py).
        """

        def __init__(self, unet: nn.Module, embedding: nn.Embedding | None) -> None:
            super().__init__()
            self.unet, self.embedding = unet, embedding

        def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: object = None) -> torch.Tensor:
            if self.embedding is None:
                return self.unet(x_t, t).sample
            labels = cond.labels if isinstance(cond, ClassCond) else cond
            if labels is None:
                labels = torch.full((x_t.shape[0],), self.embedding.num_embeddings - 1, dtype=torch.int64)
            context = self.embedding(labels.to(x_t.device).reshape(-1))[:, None].to(x_t.dtype)
            return self.unet(x_t, t, encoder_hidden_states=context).sample

    return CompVisEpsNet


def _schedule(cfg: CompVisConfig, state: dict[str, torch.Tensor]):
    """The VP schedule: the checkpoint's alphas_cumprod (as k-diffusion's CompVisDenoiser), checked against the
    config."""
    import torch

    from .vp import VPSchedule

    betas = torch.linspace(cfg.linear_start**0.5, cfg.linear_end**0.5, cfg.timesteps, dtype=torch.float64) ** 2
    from_config = torch.cumprod(1 - betas, dim=0).float()  # ldm/modules/diffusionmodules/util.py make_beta_schedule
    stored = state.get("alphas_cumprod")
    if stored is None:
        return VPSchedule.from_alphas_cumprod(from_config)
    if stored.shape != from_config.shape or not torch.allclose(stored.float(), from_config, rtol=1e-5, atol=1e-7):
        raise S4SError(f"the checkpoint's alphas_cumprod ({tuple(stored.shape)}) differs from the config's linear "
                       f"schedule ({cfg.linear_start}, {cfg.linear_end}, {cfg.timesteps}); pass its own config")
    return VPSchedule.from_alphas_cumprod(stored)


def build_denoiser(cfg: CompVisConfig, state: dict[str, torch.Tensor], name: str,
                   guidance_scale: float | None = None) -> Denoiser:
    """A VP eps denoiser on latents, its first stage attached as `decoder` (families/latent.py `LatentDecoder`)."""
    import torch

    from ..denoiser import ModelInfo
    from .latent import LatentDecoder
    from .vp import VPDenoiser

    unknown = [k for k in state if not k.startswith((UNET_PREFIX, FIRST_STAGE_PREFIX, COND_PREFIX, EMA_PREFIX))
               and k not in SCHEDULE_BUFFERS]
    if unknown:
        raise S4SError(f"the checkpoint holds tensors no CompVis LatentDiffusion has ({_names(unknown)}); "
                       f"compvis: takes a LatentDiffusion .ckpt")
    state = _ema_substituted(state, cfg.use_ema)
    if "scale_factor" in state:  # a buffer when the model was trained with scale_by_std
        cfg = dataclasses.replace(cfg, scale_factor=float(state["scale_factor"]))
    schedule = _schedule(cfg, state)
    unet = build_unet(cfg, state)
    decoder = LatentDecoder(build_first_stage(cfg, state))
    embedding = None
    cond_source = _prefixed(state, COND_PREFIX)
    if cfg.n_classes:
        embedding = torch.nn.Embedding(cfg.n_classes, cfg.context_dim)
        _load_strict(embedding, {k.removeprefix(COND_PREFIX + "embedding."): v for k, v in cond_source.items()},
                     cond_source, "ClassEmbedder (cond_stage_model.*)")
    elif cond_source:
        raise S4SError("the checkpoint has cond_stage_model.* tensors but the config is unconditional; "
                       "pass the config the checkpoint was trained with")
    scale = (2.0 if cfg.n_classes else 1.0) if guidance_scale is None else float(guidance_scale)
    kind = f"class-conditional, guidance {scale}" if cfg.n_classes else "unconditional"
    info = ModelInfo(name, cfg.latent_shape, schedule.sigma_min, schedule.sigma_max,
                     "class" if cfg.n_classes else "none", max(cfg.n_classes - 1, 0), 1.0,
                     f"CompVis LatentDiffusion ({kind}, {cfg.first_stage.upper()} first stage)", space="vp",
                     decodes_to=cfg.decodes_to)
    net = _eps_net_class()(unet, embedding)
    denoiser = VPDenoiser(net, schedule, "epsilon", info, scale if cfg.n_classes else 1.0)  # null label: num_classes
    denoiser.decoder = decoder  # images in [-1, 1]: decode(z / scale_factor), quantised for a VQ first stage
    return denoiser.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------- references


def _check_ref(ref: ModelReference) -> CompVisConfig:
    if ref.random_weights:
        raise S4SError("--random-weights does not apply to compvis: references; the weights are the checkpoint's")
    if ref.checkpoint:
        raise S4SError(f"compvis:{ref.target} names its checkpoint; drop --checkpoint")
    if not ref.config:
        raise S4SError(f"compvis:{ref.target} needs --config PATH.yaml, {CONFIG_HINT}")
    if not Path(ref.target).is_file():
        raise S4SError(f"checkpoint file not found: {ref.target}; compvis:PATH names a CompVis .ckpt")
    return parse_config(ref.config)


def check_compvis(ref: ModelReference) -> ModelSpec:
    """The ModelSpec of `compvis:PATH.ckpt --config PATH.yaml`, from the config alone (no torch)."""
    from ..models import ModelSpec

    cfg = _check_ref(ref)
    kind = "class-conditional" if cfg.n_classes else "unconditional"
    return ModelSpec(f"compvis:{ref.target}", f"CompVis LatentDiffusion ({kind}, {cfg.first_stage.upper()} first "
                     f"stage)", "x".join(map(str, cfg.latent_shape)), "class" if cfg.n_classes else "none",
                     lambda **_: load_compvis(ref), lambda: True, schedule="logsnr")


def load_compvis(ref: ModelReference, guidance_scale: float | None = None) -> Denoiser:
    """Load a CompVis LatentDiffusion checkpoint as a Denoiser (guidance default: 2.0 for class models, as S4S)."""
    cfg = _check_ref(ref)
    return build_denoiser(cfg, read_state_dict(ref.target), f"compvis:{Path(ref.target).name}", guidance_scale)
