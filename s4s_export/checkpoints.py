"""Load EDM network checkpoints without ever executing code from them (docs/models.md).

Formats:
- NVlabs/edm pickles (`{'ema': EDMPrecond, ...}`). A restricted unpickler resolves only an
  allowlist of globals (numpy ones as checking stand-ins) and restores state only on a few
  stand-in types; each persistent object becomes a `Record` (class name + state), the embedded
  `module_src` is never run, and the network is rebuilt from our own classes with the recorded
  constructor kwargs.
- torch state dicts, zip or legacy (`torch.load(weights_only=True)`), and safetensors. These hold
  no architecture: it comes from the caller (a preset) or, for safetensors, from a `network`
  metadata entry `{"class_name": ..., "init_kwargs": {...}}` (the demo asset's layout).
The network is built on the meta device, checked against the tensors, and only then given them
(`load_state_dict(strict=True, assign=True)`).
"""

from __future__ import annotations

import collections
import dataclasses
import io
import itertools
import json
import pickle
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from .denoiser import Denoiser
from .errors import S4SError
from .netspec import NetworkSpec

EDM_PERSISTENCE_VERSION = 6


class Refused(pickle.UnpicklingError):
    """Something no EDM network checkpoint holds; the message says what ("it refers to os.system")."""


class Record:
    """A pickled object kept as data: its class name and its state; nothing of it runs."""

    class_name: str = ""
    state: object = None

    def __init__(self, class_name: str, state: object = None) -> None:
        self.class_name = class_name
        self.state = state


class ModuleDictRecord(Record):
    """torch.nn.ModuleDict as data (SongUNet/DhariwalUNet keep `enc` and `dec` in real ModuleDicts).

    The unpickler creates it with `__new__` and `__setstate__` only.
    """

    class_name = "ModuleDict"

    def __setstate__(self, state: object) -> None:
        self.state = state


class EasyDict(dict):
    """dnnlib.util.EasyDict as a plain dict (EDM2's top-level object)."""

    def __setstate__(self, state: object) -> None:
        if not (state is None or state == {}):  # Python < 3.11 pickles the empty instance dict as state
            raise Refused("it restores attributes of an EasyDict")


def _reconstruct_persistent_obj(meta: object) -> Record:
    """Stand-in for torch_utils.persistence._reconstruct_persistent_obj: ignores `module_src`."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or meta.get("version") != EDM_PERSISTENCE_VERSION:
        raise pickle.UnpicklingError(f"unsupported EDM persistence record (need type 'class', "
                                     f"version {EDM_PERSISTENCE_VERSION})")
    class_name = meta.get("class_name")
    if not isinstance(class_name, str) or not class_name.isidentifier():
        raise pickle.UnpicklingError("an EDM persistence record whose class name is not a Python identifier")
    return Record(class_name, meta.get("state"))


def _load_from_bytes(blob: bytes) -> object:
    """A storage serialised with legacy torch.save, read with torch's own restricted loader."""
    try:
        return torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises assorted types (even AssertionError) on a corrupt blob
        reason = (str(e) or type(e).__name__).splitlines()[0]
        raise pickle.UnpicklingError(f"a tensor storage in it is unreadable ({reason})") from None


PLAIN_DTYPES = frozenset("b1 i1 i2 i4 i8 u1 u2 u4 u8 f2 f4 f8 c8 c16".split())  # numpy's pickled codes of number types
PLAIN_DTYPE_STATE = (None, None, None, -1, -1, 0)  # a number type's subarray, names, fields, elsize, alignment, flags


class NumpyDType:
    """A pickled numpy.dtype as data: only plain bool/int/uint/float/complex types.

    The real dtype is made from the validated code and byte order; the pickled state (which could
    describe fields, objects or subarrays) is checked, never applied.
    """

    def __init__(self, code: str) -> None:
        self.code, self.dtype = code, np.dtype(code)

    def __setstate__(self, state: object) -> None:
        plain = (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                 and state[1] in ("<", ">", "|", "=") and state[2:8] == PLAIN_DTYPE_STATE
                 and state[8:] in ((), (None,)))  # version 4 adds metadata
        if not plain:
            raise Refused(f"it holds a numpy {self.code!r} dtype with fields, objects or a subarray")
        if state[1] in ("<", ">"):
            self.dtype = np.dtype(self.code).newbyteorder(state[1])


def _numpy_dtype(code: object, align: object = False, copy: object = True) -> NumpyDType:
    """Stand-in for numpy.dtype(code, align, copy) as numpy pickles it."""
    if not isinstance(code, str) or code not in PLAIN_DTYPES or align:
        raise Refused(f"it holds a numpy dtype {code!r}, not a plain number type")
    return NumpyDType(code)


def _numpy_scalar(dtype: object, data: object = None) -> np.generic:
    """Stand-in for numpy's scalar(dtype, bytes): a number of a plain dtype from exactly its itemsize bytes."""
    if not isinstance(dtype, NumpyDType) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise Refused("it holds a numpy scalar that is not a plain number of its dtype's size")
    return np.frombuffer(data, dtype.dtype)[0]


def _allowlist() -> dict[tuple[str, str], Callable[..., object]]:
    allowed: dict[tuple[str, str], Callable[..., object]] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch.nn.modules.container", "ModuleDict"): ModuleDictRecord,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
        ("numpy", "dtype"): _numpy_dtype,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x writers
        allowed[(module, "scalar")] = _numpy_scalar
    return allowed


SETSTATE_TYPES = (ModuleDictRecord, EasyDict, NumpyDType)  # the only objects a pickle may restore state on (BUILD)


class RestrictedUnpickler(pickle._Unpickler):
    """Resolves only the globals an EDM network pickle needs and restores state only on SETSTATE_TYPES.

    Python's own unpickler (not the C one), so that state restore (BUILD) can be restricted too;
    anything else raises Refused.
    """

    ALLOWED = _allowlist()
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Callable[..., object]:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            qualname = f"{module}.{name}"
            raise Refused(f"it refers to {qualname if qualname.isprintable() else ascii(qualname)}") from None

    def load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if not isinstance(target, SETSTATE_TYPES):
            what = target.class_name if isinstance(target, Record) else type(target).__name__
            raise Refused(f"it restores pickled state on an object of type {what}")
        target.__setstate__(state)

    dispatch[pickle.BUILD[0]] = load_build


def read_edm_pickle(path: Path) -> object:
    """The unpickled object tree of an EDM pickle, persistent objects as `Record`s."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f).load()
    except Refused as e:
        raise S4SError(f"refusing to load {path}: {e}, which no EDM network checkpoint needs (loading never runs code "
                       f"from a file; use an official NVlabs/edm pickle, a torch state dict or safetensors)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            RuntimeError, MemoryError, OverflowError) as e:
        reason = (str(e) or type(e).__name__).splitlines()[0]
        raise S4SError(f"{path} is not a readable EDM network pickle: {reason}") from None


def _entries(state: dict, key: str, where: str) -> Mapping[str, object]:
    """`state[key]` as a name -> value mapping ({} when absent): a module's `_parameters`, `_modules`, ..."""
    value = state.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k.isprintable() for k in value):
        raise S4SError(f"{where}{key} in the pickle is not a name -> value dict (not an EDM module)")
    return value


def _own_tensors(record: Record, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) of a module record's own parameters and persistent buffers."""
    state = record.state
    if not isinstance(state, dict):
        raise S4SError(f"module {prefix or '<root>'} ({record.class_name}) in the pickle has no module state")
    skip = state.get("_non_persistent_buffers_set", set())
    if not isinstance(skip, (set, frozenset)):
        raise S4SError(f"{prefix}_non_persistent_buffers_set in the pickle is not a set (not an EDM module)")
    for kind in ("_parameters", "_buffers"):
        for key, value in _entries(state, kind, prefix).items():
            if value is None or (kind == "_buffers" and key in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise S4SError(f"{prefix}{key} in the pickle is a {type(value).__name__}, not a tensor")
            yield prefix + key, value


def _flatten(root: Record) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of a module record and its children, EDM's dotted names (depth first).

    Iterative, and each module is visited once: a pickle can make its module tree a cycle or nest it deeply.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    todo: list[tuple[str, object]] = [("", root)]
    while todo:
        prefix, record = todo.pop()
        if not isinstance(record, Record):
            raise S4SError(f"{prefix[:-1]} in the pickle is a {type(record).__name__}, not a module record")
        if id(record) in seen:
            raise S4SError(f"module {prefix[:-1]} in the pickle is already part of its module tree (a cycle or a "
                           f"shared module, which EDM networks never have); this is not an EDM network checkpoint")
        seen.add(id(record))
        out.update(_own_tensors(record, prefix))
        children = _entries(record.state, "_modules", prefix).items()
        todo.extend(reversed([(f"{prefix}{key}.", child) for key, child in children if child is not None]))
    return out


MAX_KWARGS_DEPTH = 8  # EDM's recorded kwargs are a dict of numbers, strings and short lists (depth 2)
MAX_KWARGS_VALUES = 10_000


def _plain(value: object, budget: Iterator[int], depth: int = 0) -> object:
    """Recorded kwargs -> JSON-able Python values (numpy scalars to numbers, tuples to lists), within limits."""
    if depth > MAX_KWARGS_DEPTH or next(budget) >= MAX_KWARGS_VALUES:
        raise S4SError(f"the network's recorded constructor kwargs nest over {MAX_KWARGS_DEPTH} deep or hold over "
                       f"{MAX_KWARGS_VALUES} values (or contain themselves); EDM records a flat dict of settings")
    if isinstance(value, np.generic):
        value = value.item()  # safe: the unpickler makes only plain number dtypes
    if isinstance(value, (list, tuple)):
        return [_plain(v, budget, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, budget, depth + 1) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise S4SError(f"the network's recorded constructor kwargs hold a {type(value).__name__}; EDM records only "
                   f"numbers, strings, lists and dicts")


def edm_pickle_contents(path: Path) -> tuple[NetworkSpec, dict[str, torch.Tensor]]:
    """(network spec, flat state dict) of the `ema` network in an NVlabs/edm pickle."""
    data = read_edm_pickle(path)
    net = data.get("ema") if isinstance(data, dict) else data
    if not isinstance(net, Record):
        raise S4SError(f"{path} holds no EDM network (expected a dict with an 'ema' network, as NVlabs/edm writes)")
    state = net.state if isinstance(net.state, dict) else {}
    args = state.get("_init_args")
    if not isinstance(args, (tuple, list, type(None))) or args:
        raise S4SError(f"{path}: {net.class_name} was pickled with positional constructor arguments, which EDM never "
                       f"records; re-save it with keyword arguments")
    kwargs = state.get("_init_kwargs")
    if not isinstance(kwargs, dict):
        raise S4SError(f"{path}: {net.class_name} has no recorded constructor kwargs (not an EDM persistent class)")
    try:
        return NetworkSpec(net.class_name, _plain(kwargs, itertools.count())), _flatten(net)
    except S4SError as e:
        raise S4SError(f"{path}: {e}") from None


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and int.from_bytes(head[:8], "little") > 0 and head[8:9] == b"{"


LEGACY_TORCH_MAGIC = b"\x8a\x0a" + torch.serialization.MAGIC_NUMBER.to_bytes(10, "little")  # pickled LONG1


def _is_legacy_torch(path: Path) -> bool:
    """A pre-1.6 (non-zip) torch.save file: a pickle that starts with torch's magic number."""
    with open(path, "rb") as f:
        return LEGACY_TORCH_MAGIC in f.read(24)  # after the PROTO (and, from protocol 4, FRAME) opcodes


def _tensor_mapping(obj: object, path: Path) -> dict[str, torch.Tensor]:
    flat = isinstance(obj, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    if not flat:
        raise S4SError(f"{path} is not a flat state dict (name -> tensor); save `net.state_dict()` of the network")
    return dict(obj)


def state_dict_contents(path: Path) -> tuple[NetworkSpec | None, dict[str, torch.Tensor]]:
    """(network spec if the file records one, tensors) of a safetensors file or torch state dict (zip or legacy)."""
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
    if zipfile.is_zipfile(path) or _is_safetensors(path) or _is_legacy_torch(path):
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


def _meta_build(spec: NetworkSpec, name: str | None, max_params: int, source: str) -> Denoiser:
    """`spec` built on the meta device (no memory), stopped once it registers over `max_params` parameters."""
    count = itertools.count(1)

    def budget(module: torch.nn.Module, param_name: str, param: torch.nn.Parameter | None) -> None:
        if param is not None and next(count) > max_params:
            raise S4SError(f"{source} describes a bigger {spec.class_name} than the {max_params} tensors it holds")

    handle = torch.nn.modules.module.register_module_parameter_registration_hook(budget)
    try:
        with torch.device("meta"):
            return spec.build(name)
    except (ValueError, RuntimeError, ZeroDivisionError, OverflowError, IndexError, KeyError) as e:
        reason = (str(e) or type(e).__name__).splitlines()[0]
        raise S4SError(f"cannot build the {spec.class_name} that {source} describes ({reason}); the checkpoint's "
                       f"constructor arguments are not a valid network") from None
    finally:
        handle.remove()


def build_loaded(spec: NetworkSpec, tensors: Mapping[str, torch.Tensor], name: str | None, source: str) -> Denoiser:
    """Build `spec` and load `tensors` into it with strict=True (eval mode, no gradients).

    The network is built on the meta device and checked against `tensors` first, so a file that
    records a huge architecture it does not hold costs no memory; the tensors then become its weights.
    """
    net = _meta_build(spec, name, len(tensors), source)
    expected = net.state_dict()
    problem = architecture_mismatch(expected, tensors)
    if problem:
        raise S4SError(f"{source} does not fit the {spec.class_name} it describes: {problem}")
    weights = {k: v.to(expected[k].dtype).contiguous() for k, v in tensors.items()}  # as copying into the net would
    net.load_state_dict(weights, strict=True, assign=True)
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
