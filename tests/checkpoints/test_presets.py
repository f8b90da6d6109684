"""Presets: official architectures, weight resolution (checkpoint, cache, download), twins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from edm_pickles import TINY, dump_edm_pickle, tiny_net

from s4s_export.cache import CACHE_ENV, OFFLINE_ENV, record_path, sha256_file
from s4s_export.checkpoints import NetworkSpec
from s4s_export.errors import S4SError
from s4s_export.modelref import ModelRef, load_model
from s4s_export.models import MODELS
from s4s_export.presets import EDM_URL, PRESETS, Preset
from s4s_export.solvers import get_solver
from s4s_export.teacher import DEFAULT_NET_TEACHER

# Official parameter counts (computed with NVlabs/edm's own classes).
OFFICIAL_PARAMS = {
    "cifar10": 55_733_891, "cifar10-cond": 55_735_299, "cifar10-ve": 56_397_827, "cifar10-cond-ve": 56_400_643,
    "ffhq": 61_805_571, "ffhq-ve": 62_761_091, "afhqv2": 61_805_571, "afhqv2-ve": 62_761_091,
    "imagenet64": 295_899_267,
}
CLASS_NAME, KWARGS = TINY["ddpmpp-cond"]


@pytest.mark.parametrize("name", list(OFFICIAL_PARAMS))
def test_official_parameter_counts(name: str) -> None:
    with torch.device("meta"):  # real classes, no memory or init cost
        net = PRESETS[name].network.build()
    assert sum(p.numel() for p in net.parameters()) == OFFICIAL_PARAMS[name]


def test_preset_table() -> None:
    assert set(PRESETS) == set(OFFICIAL_PARAMS)
    for p in PRESETS.values():
        assert p.url == EDM_URL + p.filename and p.filename.startswith("edm-") and p.filename.endswith(".pkl")
        assert f"{p.shape[1]}x{p.shape[2]}" in p.filename
        assert ("-cond-" in p.filename) == (p.conditioning == "class")
        assert p.teacher == DEFAULT_NET_TEACHER and p.schedule == "logsnr"
        assert get_solver("heun").steps(p.heun_nfe) == (18 if p.shape[1] == 32 else 40)  # EDM's N
        spec = MODELS[p.name]
        assert spec.accepts_checkpoint and spec.resolution == p.resolution and spec.conditioning == p.conditioning
    assert PRESETS["imagenet64"].network.init_kwargs["label_dim"] == 1000


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A tiny official-layout pickle served from a file:// URL."""
    net = tiny_net(CLASS_NAME, KWARGS)
    return dump_edm_pickle(tmp_path / "tiny-edm.pkl", net, KWARGS, ""), net


def tiny_preset(url: str, sha256: str | None = None) -> Preset:
    return Preset("tiny", "tiny test net", url, NetworkSpec(CLASS_NAME, KWARGS), 35, sha256)


def outputs(net: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(3)
    return net(torch.randn(2, 3, 8, 8), torch.tensor([0.1, 10.0]), torch.tensor([2, 10]))


def test_offline_placement_message(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OFFLINE_ENV, "1")
    preset = tiny_preset("https://example.invalid/models/tiny-edm.pkl")
    with pytest.raises(S4SError) as e:
        preset.load()
    msg = str(e.value)
    assert "\n" not in msg and "https://example.invalid/models/tiny-edm.pkl" in msg
    assert f"save it as {cache / 'tiny-edm.pkl'}" in msg and "--checkpoint" in msg
    assert not cache.exists()


def test_download_records_sha256_then_uses_cache(cache: Path, source: tuple[Path, torch.nn.Module]) -> None:
    path, net = source
    preset = tiny_preset(path.as_uri())
    assert not preset.is_cached()
    first = preset.load()
    cached = cache / "tiny-edm.pkl"
    assert preset.is_cached() and cached.read_bytes() == path.read_bytes()
    record = json.loads(record_path(cached).read_text())
    assert record == {"url": path.as_uri(), "sha256": sha256_file(path), "bytes": path.stat().st_size,
                      "verified_mtime_ns": cached.stat().st_mtime_ns}
    path.unlink()  # from now on only the cache has it
    assert first.info.name == "tiny" and torch.equal(outputs(first), outputs(net))
    assert torch.equal(outputs(preset.load()), outputs(net))


def test_known_checksum(cache: Path, source: tuple[Path, torch.nn.Module]) -> None:
    path, _ = source
    with pytest.raises(S4SError, match="expected 0000"):
        tiny_preset(path.as_uri(), "0" * 64).load()
    assert not any(cache.iterdir())  # no partial or temporary file left
    tiny_preset(path.as_uri(), sha256_file(path)).load()


def test_download_failure_names_placement(cache: Path, tmp_path: Path) -> None:
    url = (tmp_path / "nowhere" / "tiny-edm.pkl").as_uri()
    with pytest.raises(S4SError, match=f"download failed .*save it as {cache / 'tiny-edm.pkl'}"):
        tiny_preset(url).load()
    assert not cache.exists()  # a failed lookup creates no directories


def test_cached_file_size_is_checked(cache: Path, source: tuple[Path, torch.nn.Module]) -> None:
    path, _ = source
    preset = tiny_preset(path.as_uri())
    preset.load()
    with open(cache / "tiny-edm.pkl", "ab") as f:
        f.write(b"junk")
    size = path.stat().st_size
    with pytest.raises(S4SError, match=f"has {size + 4} bytes but was downloaded with {size}; delete .* to download"):
        preset.load()


def test_cached_file_sha256_is_checked_once_per_change(cache: Path, source: tuple[Path, torch.nn.Module],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path, net = source
    preset = tiny_preset(path.as_uri())
    preset.load()
    cached, good = cache / "tiny-edm.pkl", path.read_bytes()
    cached.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # same size, one bit flipped
    with pytest.raises(S4SError, match=f"cached {cached} has sha256 .* but was downloaded with .*delete {cached}"):
        preset.load()
    cached.write_bytes(good)  # restored: hashed once more, and the verification is recorded
    assert torch.equal(outputs(preset.load()), outputs(net))
    assert json.loads(record_path(cached).read_text())["verified_mtime_ns"] == cached.stat().st_mtime_ns

    def no_hashing(p: Path) -> str:
        raise AssertionError(f"{p} was hashed again although it did not change")

    monkeypatch.setattr("s4s_export.cache.sha256_file", no_hashing)
    assert torch.equal(outputs(preset.load()), outputs(net))


def test_checkpoint_comes_first(cache: Path, source: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path, _ = source
    preset = tiny_preset(path.as_uri())
    preset.load()  # cache filled with the first network
    other = tiny_net(CLASS_NAME, KWARGS, seed=5)
    ckpt = dump_edm_pickle(tmp_path / "mine.pkl", other, KWARGS, "")
    assert torch.equal(outputs(preset.load(checkpoint=str(ckpt))), outputs(other))
    with pytest.raises(S4SError, match="exclude each other"):
        preset.load(checkpoint=str(ckpt), random_weights=True)


def test_twin_is_seeded_named_and_not_degenerate() -> None:
    preset = tiny_preset("https://example.invalid/tiny-edm.pkl")
    rng = torch.get_rng_state()
    a, b = preset.twin(), preset.twin()
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG stream is untouched
    assert a.identity() == b.identity() and a.identity() != preset.twin(seed=1).identity()
    assert a.info.name == "tiny-twin" and "twin" in a.info.description and a.identity_dict()["name"] == "tiny-twin"
    # EDM's init nearly zeroes the output conv (D ~= c_skip * x); a twin's network visibly shapes D
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([1.0, 1.0])
    c_skip = 0.25 / (1 + 0.25)
    assert (a(x, sigma) - c_skip * x).abs().mean() > 0.05


def test_checkpoint_of_another_architecture(tmp_path: Path) -> None:
    ckpt = dump_edm_pickle(tmp_path / "tiny.pkl", tiny_net(CLASS_NAME, KWARGS), KWARGS, "")
    with pytest.raises(S4SError, match="is not a cifar10 checkpoint .*shape differs"):
        load_model(ModelRef("cifar10", checkpoint=str(ckpt)))


def test_vp_pickle_with_edm_tensors_is_refused_by_an_edm_preset(tmp_path: Path) -> None:
    """A VPPrecond DDPM++ pickle (NVIDIA's own layout) has exactly an EDMPrecond DDPM++'s tensors; the preset
    must refuse it rather than load it under the EDM preset's name."""
    vp_name, vp_kwargs = TINY["vp"]
    kwargs = {k: v for k, v in KWARGS.items() if k != "label_dim"}
    assert vp_kwargs == kwargs
    ckpt = dump_edm_pickle(tmp_path / "vp.pkl", tiny_net(vp_name, vp_kwargs), vp_kwargs, "")
    preset = Preset("tiny", "tiny test net", "file:///none", NetworkSpec(CLASS_NAME, kwargs), 35)
    with torch.device("meta"):
        reference = preset.network.build().state_dict()
    assert ({k: v.shape for k, v in reference.items()}
            == {k: v.shape for k, v in tiny_net(vp_name, vp_kwargs).state_dict().items()})
    with pytest.raises(S4SError, match="holds a VPPrecond network, not the EDMPrecond of tiny"):
        preset.load(checkpoint=ckpt)
