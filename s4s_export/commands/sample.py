"""`s4s-export sample`: images from a baked sampler (ONNX graph or TensorRT engine) as a PNG grid."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer

from ..contract import LATENTS, NEGATIVE_PROMPT_EMBEDS, PROMPT_EMBEDS
from ..errors import S4SError
from ..limits import LABEL_MAX, SEED_MAX, check_fits
from ..outputs import check_output_file, check_output_folder
from ..progress import progress
from ..runtime import Sampler, make_grid, to_uint8, write_png
from ..runtime.embeddings import load_embeddings
from ..runtime.images import GRID_MIN_PIXELS, enlarge
from ..runtime.inputs import plan_batches
from ..runtime.noise import seeded_noise
from .common import guidance_number, parse_names

PROGRESS_BATCH = 64  # a dynamic-batch graph runs in batches of this size, one progress step each


def parse_labels(text: str | None, n: int, num_classes: int | None) -> np.ndarray | None:
    """`3` -> all 3; `0,1,2` -> cycled to n; `all` -> 0, 1, ..., num_classes-1 cycled to n."""
    if text is None:
        return None
    if text.strip() == "all":
        if not num_classes:
            raise S4SError("--labels all needs a class-conditional model that records its number of classes; "
                           "pass explicit labels, e.g. --labels 0,1,2")
        return np.arange(n) % num_classes
    try:
        labels = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise S4SError(f"--labels takes comma-separated class indices (e.g. 0,1,2) or `all`; got {text!r}") from None
    if not labels:
        raise S4SError("--labels needs at least one class index")
    if not all(0 <= v <= LABEL_MAX for v in labels):
        raise S4SError(f"--labels takes class indices in [0, number of classes]; got {text!r}")
    return np.resize(np.array(labels, dtype=np.int64), n)


def sample_cmd(
    path: Path = typer.Argument(..., help="Baked sampler: model.onnx, or a TensorRT engine model.plan."),
    n: int = typer.Option(64, "--n", min=1, help="Number of images."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX,
                             help="Noise seed (numpy; sample i depends only on seed and i)."),
    labels: str = typer.Option(None, "--labels", help="Class labels for conditional models: 0,1,2 (cycled) or all."),
    guidance_scale: float = typer.Option(None, "--guidance-scale", callback=guidance_number,
                                         help="Guidance scale (1 = none; default: the graph's)."),
    out: Path = typer.Option(Path("grid.png"), "--out", help="PNG grid to write."),
    singles: Path = typer.Option(None, "--singles", help="Also write each image as DIR/00000.png, ..."),
    ncol: int = typer.Option(None, "--ncol", min=1, help="Images per grid row (default: near-square)."),
    providers: str = typer.Option(None, "--providers",
                                  help="onnxruntime providers for .onnx, e.g. cuda,cpu or tensorrt."),
    max_batch: int = typer.Option(None, "--max-batch", min=1,
                                  help="Largest batch per run (larger requests are split)."),
    prompt: str = typer.Option(None, "--prompt", help="Text-conditioned graphs built with --text-encoder: the prompt."),
    negative_prompt: str = typer.Option(None, "--negative-prompt",
                                        help="With --prompt: the negative prompt (default: the empty prompt)."),
    prompt_embeds: Path = typer.Option(None, "--prompt-embeds",
                                       help="Text-conditioned graphs: prompt embeddings, .npy [L, D] or [B, L, D], "
                                            "or .safetensors with tensors named as the graph's inputs."),
    negative_prompt_embeds: Path = typer.Option(None, "--negative-prompt-embeds",
                                                help="The unconditional (empty or negative prompt) embeddings, .npy; "
                                                     "needed with a guidance scale other than 1."),
) -> None:
    """Sample images from an exported sampler and write a PNG grid (and single PNGs on request)."""
    check_output_file(out, "--out", (".png",))
    if singles is not None:
        check_output_folder(singles, "--singles")
    sampler = Sampler.load(path, providers=None if providers is None else parse_names(providers, "--providers"),
                           max_batch=max_batch)
    if sampler.spec.output.name == LATENTS:
        raise S4SError(f"{path} outputs latents (built with --no-decode), not images; rebuild without --no-decode "
                       f"or run it with the Python runtime (Sampler.load)")
    if sampler.conditional and labels is None:
        raise S4SError("this model is class-conditional: pass --labels (e.g. --labels 0,1,2 or --labels all)")
    embeddings = {}
    if prompt_embeds is not None:
        embeddings |= load_embeddings(prompt_embeds, PROMPT_EMBEDS)
    if negative_prompt_embeds is not None:
        embeddings |= load_embeddings(negative_prompt_embeds, NEGATIVE_PROMPT_EMBEDS)
    if sampler.text and PROMPT_EMBEDS not in embeddings and prompt is None:
        raise S4SError("this model is text-conditioned: pass --prompt TEXT (graphs built with --text-encoder) or "
                       "--prompt-embeds FILE (.npy or .safetensors)")
    check_fits(n, int(np.prod(sampler.image_shape)) * 2, "--n", "images (kept for the grid) and labels",
               "sample in several runs with different --seed values")
    class_labels = parse_labels(labels, n, sampler.num_classes)
    start, first, pictures = time.perf_counter(), 0, []
    lo, hi = sampler.spec.batch_range
    for size in progress(plan_batches(n, (lo, hi or max(lo, PROGRESS_BATCH)), sampler.runner.kind), "sampling"):
        rows = {k: _rows(v, n, first, size) for k, v in embeddings.items()}
        pictures.append(to_uint8(sampler(noise=seeded_noise(sampler.image_shape, size, seed, first),
                                         class_labels=(None if class_labels is None
                                                       else class_labels[first:first + size]),
                                         guidance_scale=guidance_scale, prompt=prompt, negative_prompt=negative_prompt,
                                         **rows)))
        first += size
    seconds = time.perf_counter() - start
    pictures = np.concatenate(pictures)
    write_png(out, enlarge(make_grid(pictures, None if ncol is None else min(ncol, n)), GRID_MIN_PIXELS))
    if singles is not None:
        for i, picture in enumerate(pictures):
            write_png(singles / f"{i:05d}.png", picture)
    c, h, w = sampler.image_shape
    typer.echo(f"wrote {out} ({n} images {c}x{h}x{w}, {1e3 * seconds / n:.2f} ms/image)"
                  + (f" and {n} PNGs in {singles}" if singles is not None else ""))


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_cmd)


def _rows(embeds: np.ndarray, n: int, first: int, size: int) -> np.ndarray:
    """The rows of per-image embeddings [n, L, D] for one batch; one row [L, D] or [1, L, D] serves every image."""
    return embeds[first:first + size] if embeds.ndim == 3 and embeds.shape[0] == n and n > 1 else embeds
