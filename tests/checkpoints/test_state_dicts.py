"""Plain state dicts (torch weights-only, safetensors) load strictly; torch files are read weights-only."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from edm_pickles import TINY, tiny_net
from safetensors.torch import save_file

from s4s_export.checkpoints import NetworkSpec, load_checkpoint
from s4s_export.errors import S4SError

CLASS_NAME, KWARGS = TINY["ddpmpp-cond"]
SPEC = NetworkSpec(CLASS_NAME, KWARGS)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return tiny_net(CLASS_NAME, KWARGS)


def same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.randn(2, 3, 8, 8)
    sigma, labels = torch.tensor([0.3, 30.0]), torch.tensor([1, 10])
    return torch.equal(a(x, sigma, labels), b(x, sigma, labels))


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_torch_state_dict(zipped: bool, net: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=zipped)  # legacy: torch < 1.6's format
    assert zipfile.is_zipfile(path) == zipped
    assert same_outputs(load_checkpoint(path, SPEC, name="tiny"), net)
    with pytest.raises(S4SError, match="does not say its architecture"):
        load_checkpoint(path)


def test_safetensors_with_and_without_metadata(net: torch.nn.Module, tmp_path: Path) -> None:
    bare, described = tmp_path / "bare.safetensors", tmp_path / "described.safetensors"
    save_file(net.state_dict(), bare)
    save_file(net.state_dict(), described, metadata={"network": json.dumps(SPEC.to_dict())})
    assert same_outputs(load_checkpoint(bare, SPEC), net)
    assert same_outputs(load_checkpoint(described), net)  # the architecture comes from the metadata


def test_strict_architecture_check(net: torch.nn.Module, tmp_path: Path) -> None:
    state = dict(net.state_dict())
    del state["model.map_label.weight"]
    state["model.extra"] = torch.zeros(1)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(S4SError, match="missing model.map_label.weight; unexpected model.extra"):
        load_checkpoint(path, SPEC)


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_torch_file_with_code_is_refused(zipped: bool, net: torch.nn.Module, tmp_path: Path,
                                         payload: tuple[Path, str]) -> None:
    marker, _ = payload
    path = tmp_path / "evil.pt"
    torch.save({**net.state_dict(), "hook": Evil(marker)}, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(S4SError, match="refusing to load"):
        load_checkpoint(path, SPEC)
    assert not marker.exists()


def test_not_a_flat_state_dict(net: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "nested.pt"
    torch.save({"ema": net.state_dict()}, path)
    with pytest.raises(S4SError, match="not a flat state dict"):
        load_checkpoint(path, SPEC)
