"""`s4s-export bench` on a latent text-conditioned diffusers pipeline (SD 1.x/2.x layout): the baked graph against
the host-loop pipeline (host_loop.py), same NFE, same inputs, same ONNX Runtime provider and threads.

The baked graph is built by the build pipeline (`export.build.build_onnx`: simplified, verified) with the
solver that replays a diffusers scheduler (`families.scheduler_grid.solver_for_scheduler`): `dpmpp2m` on
DPMSolverMultistepScheduler, `euler` on EulerDiscreteScheduler, each made from the folder's scheduler
config (as users swap schedulers), so both paths sample the same grid and their images must agree.
Timed in interleaved rounds (`timing.interleaved_ms`), medians:

- `baked_ms`: one run of the baked graph (runtime `Sampler`);
- `host_loop_ms`: one run of the host-loop pipeline (NFE UNet calls, scheduler on the host, one decode);
- `unet_call_ms`: one UNet session call on the CFG batch (2B); `decode_ms`: one decoder session call (B);
- `overhead` = baked / (NFE x unet_call + decode); `host_overhead` the same for the host loop;
  `host_over_baked` = host_loop / baked; `max_abs_diff`: the largest difference of the two paths' images.

With `graphs` (bench --graphs DIR) the graphs are kept and reused when they were made from the same
weights (and, for the baked graph, the same solver grid and a batch range covering the request).
"""

from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..contract import read_sidecar
from ..denoiser import Denoiser
from ..errors import S4SError
from ..export.build import BuildRequest, Resolved, build_onnx
from ..export.latent_graph import DEFAULT_TEXT_LENGTH
from ..families.diffusers_folder import DiffusersFolder, import_diffusers
from ..families.networks import DiffusersNet
from ..families.scheduler_grid import solver_for_scheduler
from ..fileio import atomic_write_text
from ..runtime import Sampler as RuntimeSampler
from ..runtime.onnxruntime_runner import default_providers, import_onnxruntime, provider_name
from ..solvers import SolverTable
from ..timing import interleaved_ms, machine
from .host_loop import EXPORT_BATCH, HostLoopPipeline, export_host_graphs

if TYPE_CHECKING:
    from .run import BenchRequest

HOST_SCHEDULERS = {"dpmpp2m": "DPMSolverMultistepScheduler", "euler": "EulerDiscreteScheduler"}
DEFAULT_SOLVER = "dpmpp2m"
LATENT_PROVIDERS = ("cpu", "cuda")
GUIDANCE_SCALE = 7.5  # StableDiffusionPipeline's default
HOST_RECORD = "host-loop.json"  # beside the host graphs: the weights they were made from (written last)


@dataclass
class LatentGraphs:
    """What the timing needs once the torch model is gone: the graph files, the host scheduler, input shapes."""

    baked: Path
    host: Path  # the folder of the UNet and decoder graphs
    scheduler: object
    scaling_factor: float
    latent_shape: tuple[int, int, int]
    embeds_shape: tuple[int, int]  # (text length, embedding size)
    solver: str
    model: dict  # the denoiser's identity_dict
    reused: dict[str, bool]
    seconds: dict[str, float]


def latent_solver(req: BenchRequest) -> str:
    """The solver replayed on both paths: `req.solver` if it has a diffusers scheduler here, else dpmpp2m."""
    name = req.solver or DEFAULT_SOLVER
    if name not in HOST_SCHEDULERS:
        raise S4SError(f"the host-loop comparison of a latent model replays a diffusers scheduler: --solver takes "
                       f"{' or '.join(HOST_SCHEDULERS)}; got {name!r}")
    return name


def latent_provider(req: BenchRequest) -> str:
    """`req.provider` (cpu or cuda), default cuda where this onnxruntime has it, else cpu; refused if absent here."""
    if req.provider not in (None, *LATENT_PROVIDERS):
        raise S4SError(f"--provider takes {' or '.join(LATENT_PROVIDERS)}; got {req.provider!r}")
    provider = req.provider or default_providers()[0]
    available = import_onnxruntime().get_available_providers()
    if provider_name(provider) not in available:
        raise S4SError(f"this onnxruntime lacks the {provider} provider (it has {', '.join(available)}); CUDA needs "
                       f"`pip install onnxruntime-gpu` and an NVIDIA GPU, or pass --provider cpu")
    return provider


def check_latent_request(req: BenchRequest, denoiser: Denoiser) -> None:
    """Refuse what the host-loop comparison cannot run, naming the fix."""
    latent_provider(req)
    info = denoiser.info
    net = getattr(denoiser, "net", None)
    if req.ref.kind != "diffusers" or info.conditioning != "text" or not isinstance(net, DiffusersNet) \
            or net.kind != "UNet2DConditionModel" or getattr(denoiser, "decoder", None) is None:
        raise S4SError(f"bench compares a latent model with the host-loop pipeline only for text-conditioned "
                       f"diffusers UNet pipelines with a VAE (SD 1.x/2.x layout); {info.name!r} is not one")
    if net.net.config.get("addition_embed_type") is not None:
        raise S4SError(f"the host-loop pipeline feeds prompt embeddings only; {info.name!r} needs added conditions "
                       f"(addition_embed_type {net.net.config['addition_embed_type']!r}, e.g. SDXL)")
    if "onnxruntime" not in req.backends:
        raise S4SError("bench on a latent model times ONNX Runtime sessions (--provider cpu|cuda); "
                       "add onnxruntime to --backend")


def host_scheduler(folder: DiffusersFolder, solver: str, nfe: int):
    """The diffusers scheduler of `solver` made from the folder's scheduler config, set to `nfe` steps."""
    diffusers = import_diffusers()
    scheduler = getattr(diffusers, HOST_SCHEDULERS[solver]).from_config(folder.scheduler_config)
    scheduler.set_timesteps(nfe)
    return scheduler


def baked_graph(req: BenchRequest, resolved: Resolved, model: dict, folder: Path) -> tuple[Path, bool]:
    """The baked graph in `folder` for this solver grid and weights: reused if its sidecar matches, else built."""
    table: SolverTable = resolved.solver
    path = folder / f"baked-{resolved.source['solver']}-nfe{table.nfe}.onnx"
    top = max(2, *req.batches)
    doc = read_sidecar(path) if path.is_file() else {}
    if (doc.get("model", {}).get("weights_sha256") == model["weights_sha256"]
            and np.allclose(doc.get("solver", {}).get("sigmas", []), table.sigmas, rtol=1e-12, atol=0)
            and doc.get("batch_range", [0, 0])[1] >= top):
        return path, True
    build = BuildRequest(nfe=table.nfe, model=req.ref, out=str(path), batch=(1, top), guidance_scale=GUIDANCE_SCALE,
                         command="s4s-export bench")
    return build_onnx(build, resolved=resolved).onnx_path, False


def _recorded_weights(record: Path) -> str | None:
    """The weights hash the host-loop graphs in a folder were made from; None when absent or unreadable (rebuild)."""
    try:
        return json.loads(record.read_text())["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def host_graphs(denoiser: Denoiser, model: dict, folder: Path, text_length: int) -> bool:
    """The host-loop UNet and decoder graphs in `folder`: reused (True) if made from these weights, else exported."""
    record = folder / HOST_RECORD
    if _recorded_weights(record) == model["weights_sha256"]:
        return True
    record.unlink(missing_ok=True)
    export_host_graphs(denoiser.net.net, denoiser.decoder.vae, folder, text_length)
    atomic_write_text(record, json.dumps({"weights_sha256": model["weights_sha256"], "model": model["name"],
                                          "batch_range": list(EXPORT_BATCH)}) + "\n")
    return False


def prepare_latent(req: BenchRequest, denoiser: Denoiser, folder: Path) -> LatentGraphs:
    """Check the request, then make (or reuse) the baked graph and the host-loop graphs in `folder`."""
    check_latent_request(req, denoiser)
    solver = latent_solver(req)
    scheduler = host_scheduler(DiffusersFolder(req.ref.target), solver, req.nfe)
    table = solver_for_scheduler(scheduler, solver)
    model = denoiser.identity_dict()
    unet_config = denoiser.net.net.config
    seconds, reused = {}, {}
    t = time.perf_counter()
    reused["host_loop"] = host_graphs(denoiser, model, folder / "host-loop", DEFAULT_TEXT_LENGTH)
    seconds["host_loop_export"] = time.perf_counter() - t
    t = time.perf_counter()
    source = {"kind": "scheduler", "scheduler": type(scheduler).__name__, "solver": solver}
    baked, reused["baked"] = baked_graph(req, Resolved(denoiser, table, source), model, folder)
    seconds["baked_build"] = time.perf_counter() - t
    return LatentGraphs(baked, folder / "host-loop", scheduler, denoiser.decoder.scaling_factor,
                        tuple(denoiser.info.shape), (DEFAULT_TEXT_LENGTH, int(unet_config.cross_attention_dim)),
                        solver, model, reused, seconds)


def latent_inputs(graphs: LatentGraphs, batch: int) -> dict[str, np.ndarray]:
    """Seeded noise and standard normal prompt and negative prompt embeddings for `batch` images."""
    rng = np.random.default_rng(batch)
    return {"noise": rng.standard_normal((batch, *graphs.latent_shape), dtype=np.float32),
            "prompt_embeds": rng.standard_normal((batch, *graphs.embeds_shape), dtype=np.float32),
            "negative_prompt_embeds": rng.standard_normal((batch, *graphs.embeds_shape), dtype=np.float32)}


def latent_row(req: BenchRequest, baked: RuntimeSampler, host: HostLoopPipeline, graphs: LatentGraphs,
               batch: int) -> dict:
    """One batch: the images of both paths compared, then the four candidates timed in interleaved rounds."""
    feeds = latent_inputs(graphs, batch)
    noise, embeds, negative = feeds["noise"], feeds["prompt_embeds"], feeds["negative_prompt_embeds"]
    doubled = (np.concatenate([noise, noise]), np.full(2 * batch, float(graphs.scheduler.timesteps[0]), np.float32),
               np.concatenate([negative, embeds]))
    fns = {"baked": lambda: baked(**feeds, guidance_scale=GUIDANCE_SCALE),
           "host_loop": lambda: host(noise, embeds, negative, GUIDANCE_SCALE, req.nfe),
           "unet_call": lambda: host.unet_call(*doubled),
           "decode": lambda: host.decode(noise / graphs.scaling_factor)}
    diff = float(np.abs(fns["baked"]() - fns["host_loop"]()).max())
    times = interleaved_ms(fns, req.repeats, req.warmup)
    ms = {name: t["median_ms"] for name, t in times.items()}
    calls = req.nfe * ms["unet_call"] + ms["decode"]
    return {"batch": batch, **{f"{name}_ms": v for name, v in ms.items()},
            **{f"{name}_{k}_ms": times[name][f"{k}_ms"] for name in ("baked", "host_loop") for k in ("min", "max")},
            "overhead": ms["baked"] / calls, "host_overhead": ms["host_loop"] / calls,
            "host_over_baked": ms["host_loop"] / ms["baked"], "max_abs_diff": diff}


def time_latent(req: BenchRequest, graphs: LatentGraphs) -> dict:
    """The latent report: both paths on one provider (`req.provider`, default CUDA when present, else CPU)."""
    provider = latent_provider(req)
    report = {"kind": "latent", "machine": machine(req.threads), "request": req.to_dict(), "model": graphs.model,
              "solver": graphs.solver, "scheduler": type(graphs.scheduler).__name__, "nfe": req.nfe,
              "provider": provider, "guidance_scale": GUIDANCE_SCALE,
              "graphs": {"baked": str(graphs.baked), "host_loop": str(graphs.host), "reused": graphs.reused,
                         "seconds": graphs.seconds}}
    gc.collect()  # the torch model is gone: its memory goes to the sessions
    host = HostLoopPipeline.open(graphs.host, graphs.scheduler, graphs.scaling_factor, provider, req.threads)
    with RuntimeSampler.load(graphs.baked, providers=[provider], threads=req.threads) as baked:
        report["rows"] = [latent_row(req, baked, host, graphs, b) for b in req.batches]
    report["load_average_1min_after"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return report
