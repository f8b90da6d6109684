"""Check the CompVis loader (s4s_export/families/compvis.py) against CompVis's own network code.

Needs a checkout of CompVis/latent-diffusion (`--ldm-src`; its `ldm/` package and einops; not
PyTorch Lightning). For the tiny configs of tests/families/compvis_fixture.py it builds CompVis's
`UNetModel` (spatial-transformer and AttentionBlock variants), the first stage's `Encoder`/`Decoder`
with quant convs and a codebook, and the ClassEmbedder table, with random weights; saves them as a
Lightning-style `.ckpt`; loads that through our loader; and prints the largest differences of
  eps:    CompVis UNetModel(x_t, t, context) vs ours, at fractional t;
  decode: CompVis (VQ: quantise ->) post_quant_conv -> Decoder vs our decoder.
With `--write-layout` it rewrites tests/families/data/compvis_tiny_layout.json, the key names and
shapes the CI tests fill with random numbers (so the tests need no CompVis code).

    python scripts/compvis_reference.py --ldm-src ../latent-diffusion [--write-layout]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "families"))

from compvis_fixture import LAYOUT, TINY, lightning_checkpoint, write_config


def from_yaml(path: Path) -> dict:
    """A real CompVis config in the form of compvis_fixture.TINY's entries."""
    import yaml

    p = yaml.safe_load(path.read_text())["model"]["params"]
    fs = p["first_stage_config"]["params"]
    cond = p.get("cond_stage_config")
    return {"unet": p["unet_config"]["params"], "ddconfig": fs["ddconfig"],
            "first_stage": {k: fs[k] for k in ("embed_dim", "n_embed") if k in fs},
            **({"n_classes": cond["params"]["n_classes"]} if isinstance(cond, dict) else {})}


def compvis_modules(t: dict) -> dict[str, torch.nn.Module]:
    """CompVis's own modules for a config, keyed by their state-dict prefix in a LatentDiffusion."""
    from ldm.modules.diffusionmodules.model import Decoder, Encoder
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    dd, fs = t["ddconfig"], t["first_stage"]
    first = torch.nn.Module()  # ldm/models/autoencoder.py VQModel / AutoencoderKL, without the loss
    first.encoder, first.decoder = Encoder(**dd), Decoder(**dd)
    z = (2 if dd["double_z"] else 1) * dd["z_channels"]
    first.quant_conv = torch.nn.Conv2d(z, (2 if dd["double_z"] else 1) * fs["embed_dim"], 1)
    first.post_quant_conv = torch.nn.Conv2d(fs["embed_dim"], dd["z_channels"], 1)
    if "n_embed" in fs:
        first.quantize = torch.nn.Module()
        first.quantize.embedding = torch.nn.Embedding(fs["n_embed"], fs["embed_dim"])
    mods = {"model.diffusion_model.": UNetModel(**t["unet"]), "first_stage_model.": first}
    if t.get("n_classes"):
        cond = torch.nn.Module()
        cond.embedding = torch.nn.Embedding(t["n_classes"], t["unet"]["context_dim"])
        mods["cond_stage_model."] = cond
    return mods


def randomise(mods: dict[str, torch.nn.Module], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, m in mods.items():
        for k, v in m.state_dict().items():
            fan_in = max(1, v[0].numel()) if v.ndim > 1 else 1
            v.copy_(torch.randn(v.shape, generator=g) / fan_in**0.5 + (1.0 if v.ndim == 1 and "norm" in k else 0.0))
            state[prefix + k] = v
    return state


def compvis_decode(first: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """VQModel.decode as CompVis does it: VectorQuantizer2 nearest code (taming), post_quant_conv, Decoder;
    AutoencoderKL.decode: post_quant_conv, Decoder."""
    if not hasattr(first, "quantize"):
        return first.decoder(first.post_quant_conv(z))
    e = first.quantize.embedding.weight
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    idx = (flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * flat @ e.t()).argmin(1)
    zq = e[idx].reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    return first.decoder(first.post_quant_conv(zq))


def check(spec: dict, cfg: Path, tmp: Path) -> dict[str, float]:
    from s4s_export.families.compvis import load_compvis

    mods = compvis_modules(spec)
    for m in mods.values():
        m.eval()
    state = randomise(mods, seed=1)
    ckpt = lightning_checkpoint(state, tmp / "model.ckpt")
    ours = load_compvis(SimpleNamespace(target=str(ckpt), config=str(cfg), checkpoint=None, random_weights=False),
                       guidance_scale=1.0)
    shape = ours.info.shape
    g = torch.Generator().manual_seed(2)
    x_t = torch.randn(3, *shape, generator=g)
    t = torch.tensor([3.25, 500.5, 998.9])
    unet = mods["model.diffusion_model."]
    with torch.no_grad():
        if "cond_stage_model." in mods:
            labels = torch.tensor([0, 4, spec["n_classes"] - 1])
            context = mods["cond_stage_model."].embedding(labels)[:, None]
            theirs = unet(x_t, t, context=context)
            mine = ours.net(x_t, t, labels)
        else:
            theirs, mine = unet(x_t, t), ours.net(x_t, t)
        z = torch.randn(2, *shape, generator=g)
        dec_theirs, dec_mine = compvis_decode(mods["first_stage_model."], z), ours.decoder(z)
    return {"eps_max_abs_diff": float((theirs - mine).abs().max()), "eps_max_abs": float(theirs.abs().max()),
            "decode_max_abs_diff": float((dec_theirs - dec_mine).abs().max()),
            "decode_max_abs": float(dec_theirs.abs().max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ldm-src", required=True, help="a CompVis/latent-diffusion checkout (holds ldm/)")
    ap.add_argument("--write-layout", action="store_true", help=f"rewrite {LAYOUT.relative_to(ROOT)}")
    ap.add_argument("--config", type=Path, action="append", default=[],
                    help="also check a real CompVis config at full size (random weights), e.g. "
                         "configs/latent-diffusion/cin256-v2.yaml")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.ldm_src).resolve()))
    torch.manual_seed(0)
    if args.write_layout:
        layout = {v: {k: list(t.shape) for k, t in randomise(compvis_modules(TINY[v]), 0).items()} for v in TINY}
        LAYOUT.write_text(json.dumps(layout, indent=0, sort_keys=True) + "\n")
        print(f"wrote {LAYOUT}")
    with tempfile.TemporaryDirectory() as tmp:
        for variant in TINY:
            print(variant, json.dumps(check(TINY[variant], write_config(variant, Path(tmp) / "c.yaml"), Path(tmp))))
        for cfg in args.config:
            print(cfg, json.dumps(check(from_yaml(cfg), cfg, Path(tmp))))


if __name__ == "__main__":
    main()
