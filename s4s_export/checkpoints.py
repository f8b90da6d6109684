"""Load EDM network checkpoints without ever executing code from them (models.md §1.2-1.3).

Formats:
- NVlabs/edm pickles (`{'ema': EDMPrecond, ...}`). A restricted unpickler resolves only an
  allowlist of globals; each persistent object becomes a `Record` (class name + state), the
  embedded `module_src` is never run, and the network is rebuilt from our own classes with the
  recorded constructor kwargs.
- torch state dicts (`torch.load(weights_only=True)`) and safetensors. These hold no
  architecture: it comes from the caller (a preset) or, for safetensors, from a `network`
  metadata entry `{"class_name": ..., "init_kwargs": {...}}` (the demo asset's layout).
The result is always loaded with `load_state_dict(strict=True)`.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from .denoiser import Denoiser
from .errors import S4SError
from .netspec import NetworkSpec

EDM_PERSISTENCE_VERSION = 6


class Record:
    """A pickled object kept as data: its class name and its state; nothing of it runs."""

    class_name: str = ""
    state: object = None

    def __init__(self, class_name: str, state: object = None) -> None:
        self.class_name = class_name
        self.state = state

    def __setstate__(self, state: object) -> None:
        self.state = state


class ModuleDictRecord(Record):
    """torch.nn.ModuleDict as data (SongUNet/DhariwalUNet keep `enc` and `dec` in real ModuleDicts).

    The unpickler creates it with `__new__` and `__setstate__` only.
    """

    class_name = "ModuleDict"


class EasyDict(dict):
    """dnnlib.util.EasyDict as a plain dict (EDM2's top-level object)."""


def _reconstruct_persistent_obj(meta: object) -> Record:
    """Stand-in for torch_utils.persistence._reconstruct_persistent_obj: ignores `module_src`."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or meta.get("version") != EDM_PERSISTENCE_VERSION:
        raise pickle.UnpicklingError(f"unsupported EDM persistence record (need type 'class', "
                                     f"version {EDM_PERSISTENCE_VERSION})")
    return Record(str(meta.get("class_name")), meta.get("state"))


def _load_from_bytes(blob: bytes) -> object:
    """A storage serialised with legacy torch.save, read with torch's own restricted loader."""
    return torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")


def _allowlist() -> dict[tuple[str, str], Callable[..., object]]:
    scalar = np.float64(0).__reduce__()[0]  # numpy's own functions, wherever this numpy version keeps them
    reconstruct = np.zeros(1).__reduce__()[0]
    allowed: dict[tuple[str, str], Callable[..., object]] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch.nn.modules.container", "ModuleDict"): ModuleDictRecord,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x writers
        allowed[(module, "scalar")] = scalar
        allowed[(module, "_reconstruct")] = reconstruct
    return allowed


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals an EDM network pickle needs; anything else raises RefusedGlobal."""

    ALLOWED = _allowlist()

    def find_class(self, module: str, name: str) -> Callable[..., object]:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None


def read_edm_pickle(path: Path) -> object:
    """The unpickled object tree of an EDM pickle, persistent objects as `Record`s."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f).load()
    except RefusedGlobal as e:
        raise S4SError(f"refusing to load {path}: it refers to {e.qualname}, which no EDM network checkpoint needs "
                       f"(loading never runs code from a file; use an official NVlabs/edm pickle, a torch state dict "
                       f"or safetensors)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            RuntimeError) as e:
        raise S4SError(f"{path} is not a readable EDM network pickle: {e}") from None


def _flatten(record: Record, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Parameters and persistent buffers of a module record and its children, EDM's dotted names."""
    state = record.state
    if not isinstance(state, dict):
        raise S4SError(f"module {prefix or '<root>'} ({record.class_name}) in the pickle has no module state")
    skip = state.get("_non_persistent_buffers_set") or set()
    for kind in ("_parameters", "_buffers"):
        for key, value in (state.get(kind) or {}).items():
            if value is None or (kind == "_buffers" and key in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise S4SError(f"{prefix}{key} in the pickle is a {type(value).__name__}, not a tensor")
            out[prefix + key] = value
    for key, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, Record):
            raise S4SError(f"{prefix}{key} in the pickle is a {type(child).__name__}, not a module record")
        _flatten(child, f"{prefix}{key}.", out)


def _plain(value: object) -> object:
    """numpy scalars and tuples in recorded kwargs -> Python numbers and lists (JSON-able)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def edm_pickle_contents(path: Path) -> tuple[NetworkSpec, dict[str, torch.Tensor]]:
    """(network spec, flat state dict) of the `ema` network in an NVlabs/edm pickle."""
    data = read_edm_pickle(path)
    net = data.get("ema") if isinstance(data, dict) else data
    if not isinstance(net, Record):
        raise S4SError(f"{path} holds no EDM network (expected a dict with an 'ema' network, as NVlabs/edm writes)")
    state = net.state if isinstance(net.state, dict) else {}
    if state.get("_init_args"):
        raise S4SError(f"{path}: {net.class_name} was pickled with positional constructor arguments, which EDM never "
                       f"records; re-save it with keyword arguments")
    kwargs = state.get("_init_kwargs")
    if not isinstance(kwargs, dict):
        raise S4SError(f"{path}: {net.class_name} has no recorded constructor kwargs (not an EDM persistent class)")
    tensors: dict[str, torch.Tensor] = {}
    _flatten(net, "", tensors)
    return NetworkSpec(net.class_name, _plain(kwargs)), tensors


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and int.from_bytes(head[:8], "little") > 0 and head[8:9] == b"{"


def _tensor_mapping(obj: object, path: Path) -> dict[str, torch.Tensor]:
    flat = isinstance(obj, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    if not flat:
        raise S4SError(f"{path} is not a flat state dict (name -> tensor); save `net.state_dict()` of the network")
    return dict(obj)


def state_dict_contents(path: Path) -> tuple[NetworkSpec | None, dict[str, torch.Tensor]]:
    """(network spec if the file records one, tensors) of a safetensors file or torch state dict."""
    if _is_safetensors(path):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except SafetensorError as e:
            raise S4SError(f"{path} is not a readable safetensors file: {e}") from None
        spec = None
        if "network" in meta:
            try:
                spec = NetworkSpec(**json.loads(meta["network"]))
            except (json.JSONDecodeError, TypeError) as e:
                raise S4SError(f"{path}: metadata 'network' is not {{class_name, init_kwargs}} JSON ({e})") from None
        return spec, tensors
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        reason = str(e).splitlines()[0]
        raise S4SError(f"refusing to load {path}: torch's weights-only loader rejected it ({reason})") from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise S4SError(f"{path} is not a readable torch state dict: {e}") from None
    return None, _tensor_mapping(obj, path)


def checkpoint_contents(path: str | Path) -> tuple[NetworkSpec | None, dict[str, torch.Tensor]]:
    """(recorded network spec or None, flat state dict) of any supported checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise S4SError(f"checkpoint file not found: {path}")
    if zipfile.is_zipfile(path) or _is_safetensors(path):
        return state_dict_contents(path)
    return edm_pickle_contents(path)


def architecture_mismatch(expected: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]) -> str | None:
    """A short description of how two state dicts differ in names or shapes; None when they agree."""
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    shapes = [k for k in expected if k in tensors and tuple(expected[k].shape) != tuple(tensors[k].shape)]
    parts = []
    for what, keys in (("missing", missing), ("unexpected", extra), ("shape differs for", shapes)):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            parts.append(f"{what} {', '.join(keys[:3])}{more}")
    return "; ".join(parts) or None


def build_loaded(spec: NetworkSpec, tensors: Mapping[str, torch.Tensor], name: str | None, source: str) -> Denoiser:
    """Build `spec` and load `tensors` into it with strict=True (eval mode, no gradients)."""
    net = spec.build(name)
    problem = architecture_mismatch(net.state_dict(), tensors)
    if problem:
        raise S4SError(f"{source} does not fit the {spec.class_name} it describes: {problem}")
    net.load_state_dict(tensors, strict=True)
    net.info = dataclasses.replace(net.info, description=f"{net.info.description}, weights from {source}")
    return net.eval().requires_grad_(False)


def load_checkpoint(path: str | Path, spec: NetworkSpec | None = None, name: str | None = None) -> Denoiser:
    """A Denoiser from an EDM pickle, a safetensors file or a torch state dict.

    The architecture is the one the file records (EDM pickles, safetensors with `network`
    metadata), else `spec`; a plain state dict without `spec` is an error.
    """
    recorded, tensors = checkpoint_contents(path)
    arch = recorded or spec
    if arch is None:
        raise S4SError(f"{path} is a plain state dict that does not say its architecture; load it through a preset "
                       f"(--model NAME --checkpoint {path})")
    return build_loaded(arch, tensors, name, Path(path).name)
