"""The restricted loader rebuilds EDM pickles exactly and never runs code from a file."""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from edm_pickles import TINY, EasyDict, dump_edm_pickle, tiny_net

from s4s_export.checkpoints import edm_pickle_contents, load_checkpoint
from s4s_export.errors import S4SError

SIGMAS = torch.tensor([0.002, 0.5, 5.0, 80.0])  # one per sample
CASES = [(case, False) for case in TINY] + [("ddpmpp-cond", True), ("iddpm-cond", True)]


@pytest.mark.parametrize(("case", "numpy_legacy"), CASES, ids=[f"{c}-numpy{1 if old else 2}" for c, old in CASES])
def test_rebuilds_official_layout(case: str, numpy_legacy: bool, tmp_path: Path, payload: tuple[Path, str]) -> None:
    marker, source = payload
    class_name, kwargs = TINY[case]
    net = tiny_net(class_name, kwargs)
    path = dump_edm_pickle(tmp_path / f"{case}.pkl", net, kwargs, source, numpy_legacy)
    spelling = b"numpy.core.multiarray" if numpy_legacy else b"numpy._core.multiarray"
    assert spelling in path.read_bytes() and source.encode() in path.read_bytes()

    loaded = load_checkpoint(path, name=case)
    assert not marker.exists()  # the embedded module_src never ran
    assert type(loaded) is type(net) and loaded.info.name == case and not loaded.training
    ref, got = net.state_dict(), loaded.state_dict()
    assert list(got) == list(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    torch.manual_seed(1)
    x = torch.randn(4, 3, 8, 8) * SIGMAS.reshape(-1, 1, 1, 1)
    labels = torch.tensor([3, 10, 0, 9]) if kwargs.get("label_dim") else None  # 10 = null label
    assert torch.equal(loaded(x, SIGMAS, labels), net(x, SIGMAS, labels))


def test_recorded_architecture_and_state(tmp_path: Path) -> None:
    class_name, kwargs = TINY["ncsnpp"]
    net = tiny_net(class_name, kwargs)
    spec, tensors = edm_pickle_contents(dump_edm_pickle(tmp_path / "n.pkl", net, kwargs, "", numpy_legacy=True))
    assert spec.class_name == "EDMPrecond" and spec.init_kwargs == kwargs
    assert set(tensors) == set(net.state_dict())  # includes the Fourier `freqs` and resample_filter buffers
    assert "model.map_noise.freqs" in tensors and "model.enc.4x4_aux_residual.resample_filter" in tensors


def test_easydict_top_level(tmp_path: Path) -> None:
    class_name, kwargs = TINY["ve"]
    net = tiny_net(class_name, kwargs)
    path = dump_edm_pickle(tmp_path / "e.pkl", net, kwargs, "", top=EasyDict)
    assert b"dnnlib.util" in path.read_bytes()
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.05, 20.0])
    assert torch.equal(load_checkpoint(path)(x, sigma), net(x, sigma))


def test_payload_would_run_if_executed(payload: tuple[Path, str]) -> None:
    marker, source = payload  # the refusal tests below are meaningful only if this payload works
    exec(source)
    assert marker.exists()


class Call:
    """Pickles as `func(*args)`, then restores `state` on the result if given: what a malicious checkpoint does."""

    def __init__(self, func: object, *args: object, state: object = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


@pytest.mark.parametrize("attack", ["os.system", "builtins.exec", "hidden-in-edm-pickle"])
def test_refuses_code_and_never_runs_it(attack: str, tmp_path: Path, payload: tuple[Path, str]) -> None:
    marker, source = payload
    path = tmp_path / "evil.pkl"
    if attack == "os.system":
        path.write_bytes(pickle.dumps({"ema": Call(os.system, f"touch {marker}")}))
        expected = f"{os.system.__module__}.system"
    elif attack == "builtins.exec":
        path.write_bytes(pickle.dumps(Call(builtins.exec, source)))
        expected = "builtins.exec"
    else:
        class_name, kwargs = TINY["ddpmpp-cond"]
        dump_edm_pickle(path, tiny_net(class_name, kwargs), kwargs, "", extra=Call(builtins.exec, source))
        expected = "builtins.exec"
    with pytest.raises(S4SError, match=f"refusing to load .*{expected}"):
        load_checkpoint(path)
    assert not marker.exists()


def test_refuses_unknown_persistence_version(tmp_path: Path) -> None:
    class_name, kwargs = TINY["vp"]
    path = dump_edm_pickle(tmp_path / "v.pkl", tiny_net(class_name, kwargs), kwargs, "", version=7)
    with pytest.raises(S4SError, match="version 6"):
        load_checkpoint(path)


def test_not_a_network_pickle(tmp_path: Path) -> None:
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"ema": None, "dataset_kwargs": {}}))
    with pytest.raises(S4SError, match="holds no EDM network"):
        load_checkpoint(path)
    with pytest.raises(S4SError, match="not found"):
        load_checkpoint(tmp_path / "missing.pkl")


SCALAR = np.float64(0).__reduce__()[0]  # numpy's scalar(dtype, bytes), pickled as numpy._core.multiarray.scalar
OVERLAPPING = (3, "|", None, ("a", "b"), {"a": (np.dtype("O"), 0), "b": (np.dtype("i8"), 0)}, 8, 1, 0)
NUMPY_ATTACKS = {  # only allowlisted names; before the fix the first one segfaulted in `.item()`
    "object pointer from bytes": (Call(SCALAR, Call(np.dtype, "V8", False, True, state=OVERLAPPING), b"A" * 8),
                                  "numpy dtype 'V8', not a plain number type"),
    "float64 state with a 16-byte size": (Call(SCALAR, Call(np.dtype, "f8", False, True,
                                                            state=(3, "<", None, None, None, 16, 1, 0)), b"A" * 16),
                                          "numpy 'f8' dtype with fields, objects or a subarray"),
    "short scalar": (Call(SCALAR, np.dtype("f8"), b"A" * 4), "numpy scalar that is not a plain number of its"),
    "state on an OrderedDict": (Call(collections.OrderedDict, state={"x": 1}),
                                "pickled state on an object of type OrderedDict"),
    "array": (np.arange(3), r"refers to numpy\._core\.multiarray\._reconstruct"),
}
LOAD_EACH = """
import sys
from s4s_export.checkpoints import load_checkpoint
from s4s_export.errors import S4SError
for path in sys.argv[1:]:
    try:
        load_checkpoint(path)
        print("loaded", path)
    except S4SError as e:
        print(e)
"""


def test_numpy_attacks_are_refused_in_a_subprocess(tmp_path: Path) -> None:
    """Each crafted value sits in the network's recorded kwargs, where `.item()` would read it."""
    class_name, kwargs = TINY["vp"]
    net = tiny_net(class_name, kwargs)
    paths = [dump_edm_pickle(tmp_path / f"{i}.pkl", net, dict(kwargs, sigma_data=value), "")
             for i, (value, _) in enumerate(NUMPY_ATTACKS.values())]
    r = subprocess.run([sys.executable, "-c", LOAD_EACH, *map(str, paths)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"the loader crashed (exit {r.returncode}): {r.stderr[-2000:]}"
    lines = r.stdout.splitlines()
    assert len(lines) == len(paths)
    for line, path, (name, (_, reason)) in zip(lines, paths, NUMPY_ATTACKS.items()):
        assert line.startswith(f"refusing to load {path}: it ") and re.search(reason, line), (name, line)


def test_module_cycle_is_refused(tmp_path: Path) -> None:
    class_name, kwargs = TINY["ddpmpp-cond"]
    net = tiny_net(class_name, kwargs)
    net.model.enc._modules["loop"] = net.model.enc  # a ModuleDict that contains itself
    path = dump_edm_pickle(tmp_path / "cycle.pkl", net, kwargs, "")
    with pytest.raises(S4SError, match=f"{path}: module model.enc.loop in the pickle is already part of its module"):
        load_checkpoint(path)


def test_self_referencing_kwargs_are_refused(tmp_path: Path) -> None:
    class_name, kwargs = TINY["vp"]
    loop: list = []
    loop.append(loop)
    path = dump_edm_pickle(tmp_path / "kw.pkl", tiny_net(class_name, kwargs), dict(kwargs, channel_mult=loop), "")
    with pytest.raises(S4SError, match="recorded constructor kwargs nest over 8 deep .*contain themselves"):
        load_checkpoint(path)


@pytest.mark.parametrize(("change", "reason"), [(dict(model_channels=2**40), "Storage size calculation overflowed"),
                                                (dict(num_blocks=10**9), "bigger EDMPrecond than the")])
def test_recorded_giant_network_costs_no_memory(change: dict, reason: str, tmp_path: Path) -> None:
    class_name, kwargs = TINY["ncsnpp"]
    path = dump_edm_pickle(tmp_path / "giant.pkl", tiny_net(class_name, kwargs), dict(kwargs, **change), "")
    with pytest.raises(S4SError, match=reason):  # refused on the meta device, before any allocation
        load_checkpoint(path)
