"""The restricted loader rebuilds EDM pickles exactly and never runs code from a file."""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path

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
    """Pickles as `func(*args)`: what a malicious checkpoint would do."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


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
