"""compvis:PATH.ckpt --config PATH.yaml: tiny Lightning checkpoints in CompVis's key layout (compvis_fixture.py).

Against CompVis's own network code the conversion is checked by scripts/compvis_reference.py (needs a
CompVis/latent-diffusion checkout); here: strict loading, the CompVis eps-model formula, guidance, VQ
decoding, refusal of code-executing pickles, and one-line errors.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from s4s_export.errors import S4SError

pytest.importorskip("diffusers", reason="CompVis checkpoints are rebuilt with diffusers' classes (extra 'diffusers')")
pytest.importorskip("yaml", reason="CompVis configs are YAML (PyYAML comes with the 'diffusers' extra)")

from s4s_export.families.compvis import check_compvis, load_compvis, read_state_dict

from .compvis_fixture import (
    lightning_checkpoint,
    random_state,
    schedule_buffers,
    write_config,
)


def ref(ckpt: Path | str, config: Path | str | None, **kw) -> SimpleNamespace:
    return SimpleNamespace(target=str(ckpt), config=None if config is None else str(config),
                           checkpoint=kw.get("checkpoint"), random_weights=kw.get("random_weights", False))


@pytest.fixture
def files(tmp_path):
    def make(variant: str, state: dict | None = None, **config_changes) -> SimpleNamespace:
        ckpt = lightning_checkpoint(random_state(variant) if state is None else state, tmp_path / f"{variant}.ckpt")
        return ref(ckpt, write_config(variant, tmp_path / f"{variant}.yaml", **config_changes))

    return make


def compvis_denoiser(unet_eps, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """CompVis's eps model by hand: fractional t by log-sigma interpolation over the stored alphas_cumprod,
    x_t = sqrt(abar) x0 + sqrt(1 - abar) eps = x_VE / sqrt(1 + sigma^2), D = x_VE - sigma * eps(x_t, t)."""
    ac = schedule_buffers()["alphas_cumprod"].double().numpy()
    log_sigmas = np.log(np.sqrt((1 - ac) / ac))
    t = torch.tensor(np.interp(np.log(sigma.double().numpy()), log_sigmas, np.arange(ac.size)), dtype=torch.float32)
    s = sigma.view(-1, 1, 1, 1)
    abar = 1 / (1 + s**2)
    return x - s * unet_eps(abar.sqrt() * x, t)


def assert_denoised_close(got: torch.Tensor, expected: torch.Tensor, sigma: torch.Tensor) -> None:
    """Equal up to float32 rounding of eps (and of t), which D = x - sigma * eps scales by sigma."""
    err = (got - expected).abs().flatten(1).max(1).values
    assert torch.all(err <= 2e-5 * (1 + sigma)), (err, sigma)


def test_class_conditional_checkpoint_loads_strictly_and_is_the_compvis_formula(files):
    r = files("cin")
    d = load_compvis(r)
    info = d.info
    assert (info.shape, info.decodes_to, info.space, info.conditioning, info.num_classes) == (
        (3, 8, 8), (3, 16, 16), "vp", "class", 10)
    # the 0.0015..0.0195 linear schedule's range (docs/models.md): sigma in [0.0388, 83.82]
    assert info.sigma_min == pytest.approx(0.0388, abs=5e-5) and info.sigma_max == pytest.approx(83.82, abs=5e-3)
    assert not any(p.requires_grad for p in d.parameters()) and not d.training
    # strict: the loaded weights are the checkpoint's, untouched
    state = random_state("cin")
    assert torch.equal(d.net.embedding.weight, state["cond_stage_model.embedding.weight"])
    assert torch.equal(d.net.unet.conv_in.weight, state["model.diffusion_model.input_blocks.0.0.weight"])

    unet, table = d.net.unet, d.net.embedding.weight
    labels = torch.tensor([3, 10])  # 10 = the null row (cin256-v2's 1000)

    def eps(x_t, t, lab):
        return unet(x_t, t, encoder_hidden_states=table[lab][:, None]).sample

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g) * 3
    sigma = torch.tensor([0.7, 14.0])
    null = torch.full_like(labels, 10)
    def eps_u(x_t, t):
        return eps(x_t, t, null)

    d_u = compvis_denoiser(eps_u, x, sigma)
    d_c = compvis_denoiser(lambda x_t, t: eps(x_t, t, labels), x, sigma)
    expected = d_u + 2.0 * (d_c - d_u)  # guidance 2.0 (the default for class models): eps_u + 2 (eps_c - eps_u)
    with torch.no_grad():
        got = d(x, sigma, labels)
    assert_denoised_close(got, expected, sigma)
    assert (got[0] - d_c[0]).abs().max() > 1e-3  # guidance changes the conditional sample
    assert_denoised_close(got[1:], d_u[1:], sigma[1:])  # the null label: unconditional
    with torch.no_grad():
        assert_denoised_close(d(x, sigma), d_u, sigma)  # cond=None: unconditional


def test_unconditional_attention_unet_and_vq_decoding(files):
    d = load_compvis(files("lsun"))
    assert (d.info.conditioning, d.info.num_classes, d.info.decodes_to) == ("none", 0, (3, 16, 16))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 8, generator=g)
    sigma = torch.tensor([0.05, 80.0])
    with torch.no_grad():
        got = d(x, sigma)
        expected = compvis_denoiser(lambda x_t, t: d.net.unet(x_t, t).sample, x, sigma)
        assert_denoised_close(got, expected, sigma)
        # VQ decoding snaps each latent vector to its nearest code first (docs/models.md)
        z = torch.randn(2, 3, 8, 8, generator=g)
        codes = d.decoder.vae.quantize.embedding.weight
        flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
        snapped = codes[torch.cdist(flat, codes).argmin(1)].reshape(2, 8, 8, 3).permute(0, 3, 1, 2)
        image = d.decoder(z)
        assert image.shape == (2, 3, 16, 16)
        torch.testing.assert_close(image, d.decoder.vae.decode(snapped, force_not_quantize=True).sample,
                                   rtol=1e-4, atol=1e-4)  # the straight-through z + (z_q - z) rounds a little
        unquantised = d.decoder.vae.decode(z, force_not_quantize=True).sample
        assert (image - unquantised).abs().max() > 1e-2


def test_ema_weights_are_used_when_present(files):
    state = random_state("lsun")
    ema = {"model_ema." + "diffusion_model" + k.removeprefix("model.diffusion_model.").replace(".", ""): v + 1
           for k, v in state.items() if k.startswith("model.diffusion_model.")}
    d = load_compvis(files("lsun", {**state, **ema, "model_ema.decay": torch.tensor(0.9999),
                                    "model_ema.num_updates": torch.tensor(7)}))
    torch.testing.assert_close(d.net.unet.conv_in.weight, state["model.diffusion_model.input_blocks.0.0.weight"] + 1)
    del ema[next(iter(ema))]
    with pytest.raises(S4SError, match="model_ema.* tensors do not match its UNet"):
        load_compvis(files("lsun", {**state, **ema}))


def test_code_executing_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": random_state("lsun"), "callbacks": {"x": Payload()}}, path)
    with pytest.raises(S4SError, match=r"refusing to load .*evil\.ckpt: it refers to (posix|os|nt)\.system") as e:
        read_state_dict(path)
    assert "\n" not in str(e.value)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: an unrestricted load runs it
    assert marker.exists()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("model.diffusion_model.out.2.weight"), "missing network weights: conv_out.weight"),
    (lambda s: s.update({"model.diffusion_model.extra.weight": torch.ones(1)}),
     "unexpected checkpoint tensors: model.diffusion_model.extra.weight"),
    (lambda s: s.pop("first_stage_model.quantize.embedding.weight"), "missing network weights: quantize.embedding"),
    (lambda s: s.update({"first_stage_model.loss.w": torch.ones(1)}),
     "unexpected checkpoint tensors: first_stage_model.loss.w"),
    (lambda s: s.update({"cond_stage_model.embedding.weight": torch.ones(11, 16)}), "config is unconditional"),
    (lambda s: s.update({"somewhere.else": torch.ones(1)}), "tensors no CompVis LatentDiffusion has"),
    (lambda s: s.update({"model.diffusion_model.input_blocks.0.0.weight": torch.ones(32, 4, 3, 3)}),
     "shape differs for: conv_in.weight"),
])
def test_strict_loading_names_the_keys(files, change, message):
    state = random_state("lsun")
    change(state)
    with pytest.raises(S4SError, match=re.escape(message)) as e:
        load_compvis(files("lsun", state))
    assert "\n" not in str(e.value)


def test_schedule_must_match_the_config(files):
    with pytest.raises(S4SError, match="alphas_cumprod .* differs from the config's linear schedule"):
        load_compvis(files("lsun", linear_end=0.012))


def test_check_reads_the_config_only(files, tmp_path):
    spec = check_compvis(files("cin"))
    assert (spec.resolution, spec.conditioning) == ("3x8x8", "class")
    assert spec.load().info.num_classes == 10


@pytest.mark.parametrize("config_changes, message", [
    ({"parameterization": "x0"}, "parameterization 'x0' is not supported"),
    ({"cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"}},
     "cond_stage_config target 'ldm.modules.encoders.modules.FrozenCLIPEmbedder' is not supported"),
    ({"unet_config": {"target": "my.evil.Module", "params": {}}}, "unet_config target 'my.evil.Module'"),
])
def test_unsupported_configs_are_one_line(files, config_changes, message):
    with pytest.raises(S4SError, match=re.escape(message)) as e:
        load_compvis(files("lsun", **config_changes))
    assert "\n" not in str(e.value)


def test_bad_references(files, tmp_path):
    r = files("lsun")
    cases = [
        (ref(r.target, None), "needs --config PATH.yaml"),
        (ref(tmp_path / "none.ckpt", r.config), "checkpoint file not found"),
        (ref(r.target, tmp_path / "none.yaml"), "config file not found"),
        (ref(r.target, r.config, random_weights=True), "--random-weights does not apply"),
        (ref(r.target, r.config, checkpoint="x.pt"), "drop --checkpoint"),
    ]
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    cases.append((ref(r.target, tmp_path / "bad.yaml"), "is not readable YAML"))
    (tmp_path / "python.yaml").write_text("!!python/object/apply:os.system ['touch x']")
    cases.append((ref(r.target, tmp_path / "python.yaml"), "is not readable YAML"))
    for bad, message in cases:
        with pytest.raises(S4SError, match=re.escape(message)):
            check_compvis(bad)


@pytest.mark.parametrize("module, message", [("yaml", "needs PyYAML"), ("diffusers", "rebuilt with diffusers")])
def test_missing_extras_are_one_line(files, monkeypatch, module, message):
    r = files("lsun")
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    with pytest.raises(S4SError, match=re.escape(message) + r".*pip install 's4s-export\[diffusers\]'"):
        load_compvis(r)


def test_sampling_and_decoding_through_the_project_loop(files):
    from s4s_export.evaluate import score
    from s4s_export.heldout import held_out_set
    from s4s_export.solver_ref import resolve_solvers
    from s4s_export.teacher import DEFAULT_NET_TEACHER

    d = load_compvis(files("cin"))
    held = held_out_set(d, DEFAULT_NET_TEACHER, samples=4, batch=4)
    solvers = resolve_solvers(["dpmpp2m"], [4, 8], denoiser=d, schedule="logsnr")
    errors = [score(d, s.table, held, batch=4)["rmse_vs_teacher"] for s in solvers]
    assert errors[1] < errors[0]  # random weights, but the solver still converges to the teacher
    images = d.decoder(held.target)
    assert images.shape == (4, *d.info.decodes_to) and torch.isfinite(images).all()


def test_kl_first_stage_decodes_without_quantising(files):
    d = load_compvis(files("kl"))
    assert (d.decoder.kind, d.info.decodes_to) == ("AutoencoderKL", (3, 16, 16))
    state = random_state("kl")
    torch.testing.assert_close(d.decoder.vae.post_quant_conv.weight, state["first_stage_model.post_quant_conv.weight"])
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(d.decoder(z), d.decoder.vae.decode(z).sample)  # scale_factor 1.0, no codebook
