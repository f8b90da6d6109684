"""Checkpoint test helpers: tiny EDM networks and pickles in NVlabs/edm's layout, written without EDM code.

`write_edm_pickle` follows the official pickle layout (docs/models.md): every module becomes
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with meta = {type, version 6,
module_src, class_name, state}; ModuleDicts, tensors and numpy scalars pickle as torch/numpy do.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from s4s_export.networks import build_network

SONG = dict(img_resolution=8, img_channels=3, model_type="SongUNet", model_channels=16, channel_mult=[1, 2],
            num_blocks=1, attn_resolutions=[4], dropout=0.0, augment_dim=9)
NCSN = dict(SONG, embedding_type="fourier", encoder_type="residual", channel_mult_noise=2, resample_filter=[1, 3, 3, 1])
ADM = dict(SONG, model_type="DhariwalUNet", model_channels=32)
TINY = {
    "ddpmpp-cond": ("EDMPrecond", dict(SONG, label_dim=10)),
    "ncsnpp": ("EDMPrecond", NCSN),
    "adm-cond": ("EDMPrecond", dict(ADM, label_dim=10)),
    "vp": ("VPPrecond", SONG),
    "ve": ("VEPrecond", NCSN),
    "iddpm-cond": ("iDDPMPrecond", dict(ADM, label_dim=10)),
}


def tiny_net(class_name: str, kwargs: dict, seed: int = 0) -> nn.Module:
    """A tiny network with every parameter non-zero (EDM zero-inits output layers)."""
    torch.manual_seed(seed)
    net = build_network(class_name, **kwargs)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p), alpha=0.1)
    return net.eval().requires_grad_(False)


class GlobalRef:
    """Pickles as a reference to `module.qualname` (that module need not exist here)."""

    def __init__(self, module: str, qualname: str) -> None:
        self.module, self.qualname = module, qualname

    def __reduce__(self) -> str:
        return self.qualname

    def __call__(self, *args: object) -> object:  # pickle requires reduce functions to be callable
        raise AssertionError(f"{self.module}.{self.qualname} is only a name for pickling")


RECONSTRUCT = GlobalRef("torch_utils.persistence", "_reconstruct_persistent_obj")


class Persistent:
    """A non-network persistent object (EDMLoss, AugmentPipe) with plain attributes."""

    def __init__(self, class_name: str, **state: object) -> None:
        self.class_name, self.state = class_name, state


PRECOND_ARGS = {"img_resolution", "img_channels", "label_dim", "use_fp16", "model_type", "sigma_min", "sigma_max",
                "sigma_data", "beta_d", "beta_min", "M", "epsilon_t", "C_1", "C_2"}


class EasyDict(dict):
    """Pickles as dnnlib.util.EasyDict (EDM2's top-level object)."""


class EDMLayoutPickler(pickle._Pickler):
    """NVlabs/edm's persistence layout; `numpy_legacy` spells numpy globals as numpy 1.x does.

    `init_kwargs` maps id(module) to the constructor kwargs EDM's decorator would have recorded.
    """

    def __init__(self, file, module_src: str, init_kwargs: dict[int, dict], numpy_legacy: bool = False,
                 version: int = 6) -> None:
        super().__init__(file, protocol=4)
        self.module_src = module_src
        self.version = version
        self.init_kwargs = init_kwargs
        self.renamed: dict[int, tuple[str, str]] = {id(EasyDict): ("dnnlib.util", "EasyDict")}
        if numpy_legacy:
            self.renamed[id(np.float64(0).__reduce__()[0])] = ("numpy.core.multiarray", "scalar")

    def record(self, class_name: str, state: dict) -> tuple:
        meta = dict(type="class", version=self.version, module_src=self.module_src, class_name=class_name, state=state)
        return RECONSTRUCT, (meta,)

    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, Persistent):
            return self.record(obj.class_name, obj.state)
        if isinstance(obj, nn.Module) and not isinstance(obj, nn.ModuleDict):
            state = {k: v for k, v in obj.__dict__.items() if k != "info"}  # EDM modules have no ModelInfo
            state.update(_init_args=(), _init_kwargs=self.init_kwargs.get(id(obj), {}))
            if "skip_scale" in state:
                state["skip_scale"] = np.float64(state["skip_scale"])  # EDM stores np.sqrt(0.5)
            return self.record(type(obj).__name__, state)
        return NotImplemented

    def save_global(self, obj: object, name: str | None = None) -> None:
        target = (obj.module, obj.qualname) if isinstance(obj, GlobalRef) else self.renamed.get(id(obj))
        if target is None:
            super().save_global(obj, name)
            return
        self.save(target[0])
        self.save(target[1])
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)


def dump_edm_pickle(path: Path, net: nn.Module, kwargs: dict, module_src: str, numpy_legacy: bool = False,
                    extra: object = None, version: int = 6, top: type = dict) -> Path:
    """Write `{ema, loss_fn, augment_pipe, dataset_kwargs}` as NVlabs/edm's training loop does."""
    inner = {k: v for k, v in kwargs.items() if k not in PRECOND_ARGS}
    inner.update(img_resolution=kwargs["img_resolution"], in_channels=net.img_channels,
                 out_channels=net.model.out_channels, label_dim=net.label_dim)
    data = top({
        "ema": net,
        "loss_fn": Persistent("EDMLoss", P_mean=-1.2, P_std=1.2, sigma_data=0.5, _init_args=(), _init_kwargs={}),
        "augment_pipe": Persistent("AugmentPipe", p=np.float64(0.12), xflip=np.float32(1e8), yflip=np.int64(1),
                                   enabled=np.bool_(True), _init_args=(), _init_kwargs={}),
        "dataset_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "resolution": 8, "extra": extra},
    })
    with open(path, "wb") as f:
        inits = {id(net): dict(kwargs), id(net.model): inner}
        EDMLayoutPickler(f, module_src, inits, numpy_legacy, version).dump(data)
    return path
