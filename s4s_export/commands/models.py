"""`s4s-export models`: the registered model names `--model` accepts, and the other reference kinds;
with `--model REF`, what that reference resolves to."""

from __future__ import annotations

import typer

from ..modelref import REF_KINDS, ModelRef
from ..models import MODELS
from .common import CheckpointOpt, ModelConfigOpt, RandomWeightsOpt, console, model_ref, print_json, print_table


def describe_model(ref: ModelRef) -> dict:
    """What a reference resolves to: family, shapes, sigma range, conditioning, decoder, model space."""
    from ..conditioning import guidance_scale
    from ..modelref import check_model, load_model

    spec = check_model(ref)
    denoiser = load_model(ref)
    info = denoiser.info
    decoder = getattr(denoiser, "decoder", None)
    net = getattr(denoiser, "net", None)
    return {"reference": ref.text, "family": type(denoiser).__name__,
            "network": (getattr(net, "kind", None) or type(getattr(net, "net", net)).__name__
                        if net is not None else None),
            "description": info.description or spec.description, "shape": list(info.shape),
            "latent": info.latent, "decodes_to": list(info.decodes_to) if info.decodes_to else None,
            "decoder": getattr(decoder, "kind", None) if decoder is not None else None,
            "sigma_min": info.sigma_min, "sigma_max": info.sigma_max, "space": info.space,
            "conditioning": info.conditioning, "num_classes": info.num_classes,
            "guidance_scale": guidance_scale(denoiser), "schedule": spec.schedule, "teacher": spec.teacher.label(),
            "weights_sha256": denoiser.identity()}


def models(
    model: str = typer.Option(None, "--model", help="Describe what this reference resolves to (loads it)."),
    checkpoint: CheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    config: ModelConfigOpt = None,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List the models: name, resolution, conditioning, and whether the weights are here; or describe one --model."""
    if model is not None:
        info = describe_model(model_ref(model, checkpoint, random_weights, config))
        if json_out:
            print_json(info)
            return
        print_table(model, ["property", "value"], [[k, "-" if v is None else v] for k, v in info.items()])
        return
    rows = [{"name": s.name, "resolution": s.resolution, "conditioning": s.conditioning,
             "weights": "local" if s.available() else "missing", "exact": s.exact, "description": s.description}
            for s in MODELS.values()]
    if json_out:
        print_json({"models": rows})
        return
    print_table("models", ["name", "resolution", "conditioning", "weights", "description"],
                [[r["name"], r["resolution"], r["conditioning"], r["weights"], r["description"]] for r in rows])
    others = [k.usage for name, k in REF_KINDS.items() if name != "name"]
    if others:
        console.print(f"--model also takes: {', '.join(others)}; `s4s-export models --model REF` describes one",
                      highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
