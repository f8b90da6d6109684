"""The baked latent graph against the pipeline as diffusers/Optimum users run it on ONNX Runtime.

Host-loop pipeline (Optimum's ORTStableDiffusionPipeline layout): the UNet and the VAE decoder as two
separate ONNX Runtime sessions, the diffusers scheduler stepping on the host, classifier-free guidance as
batch doubling (one UNet call per step on [uncond, cond]), then the decoder session. The baked graph is
the same model and scheduler grid in one graph (export/latent_graph.py), served by the runtime's
Sampler. Both run on the same backend (ORT CPU), same NFE, same inputs; `compare` times both and checks
they give the same images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..contract import GUIDANCE, NEGATIVE_PROMPT_EMBEDS, NOISE, PROMPT_EMBEDS
from ..errors import S4SError
from ..export.onnx_export import quiet
from ..export.verify import cpu_session


class _UNetCall(nn.Module):
    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample


class _Decode(nn.Module):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent_sample).sample


def _export(module: nn.Module, inputs: dict[str, torch.Tensor], output: str, path: Path) -> Path:
    dim = torch.export.Dim("batch", min=1, max=64)
    with quiet():
        program = torch.onnx.export(module, (), None, kwargs=inputs, dynamo=True, external_data=False,
                                    input_names=list(inputs), output_names=[output],
                                    dynamic_shapes={k: {0: dim} for k in inputs}, verbose=False)
    program.save(str(path))
    return path


@dataclass
class HostLoopPipeline:
    """UNet and VAE decoder sessions plus a diffusers scheduler: Optimum's way of running SD on ORT."""

    unet: object
    vae: object
    scheduler: object
    scaling_factor: float

    @classmethod
    def export(cls, pipeline, folder: Path, threads: int | None = None) -> HostLoopPipeline:
        """Export `pipeline.unet` and `pipeline.vae`'s decoder (fp32, dynamo) into `folder` and open them."""
        folder.mkdir(parents=True, exist_ok=True)
        unet, vae = pipeline.unet.eval(), pipeline.vae.eval()
        c, s = unet.config.in_channels, unet.config.sample_size
        d = unet.config.cross_attention_dim
        unet_path = _export(_UNetCall(unet), {"sample": torch.randn(2, c, s, s), "timestep": torch.ones(2),
                                              "encoder_hidden_states": torch.randn(2, 77, d)},
                            "out_sample", folder / "unet.onnx")
        vae_path = _export(_Decode(vae), {"latent_sample": torch.randn(2, c, s, s)}, "sample",
                           folder / "vae_decoder.onnx")
        return cls(cpu_session(unet_path, threads), cpu_session(vae_path, threads), pipeline.scheduler,
                   float(vae.config.scaling_factor))

    def __call__(self, noise: np.ndarray, prompt_embeds: np.ndarray, negative_prompt_embeds: np.ndarray,
                 guidance_scale: float, steps: int) -> np.ndarray:
        """Images [B, 3, H, W] in [-1, 1] (clamped), as StableDiffusionPipeline's loop with ORT sessions."""
        self.scheduler.set_timesteps(steps)
        latents = torch.from_numpy(noise) * self.scheduler.init_noise_sigma
        embeds = np.concatenate([negative_prompt_embeds, prompt_embeds]).astype(np.float32)
        for t in self.scheduler.timesteps:
            x = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)
            timestep = np.full(x.shape[0], float(t), np.float32)
            out = self.unet.run(None, {"sample": x.numpy(), "timestep": timestep, "encoder_hidden_states": embeds})[0]
            uncond, cond = np.split(out, 2)
            guided = torch.from_numpy(uncond + guidance_scale * (cond - uncond))
            latents = self.scheduler.step(guided, t, latents).prev_sample
        images = self.vae.run(None, {"latent_sample": (latents / self.scaling_factor).numpy().astype(np.float32)})[0]
        return np.clip(images, -1, 1)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def compare(baked, host: HostLoopPipeline, feeds: dict[str, np.ndarray], steps: int, repeats: int = 5) -> dict:
    """Median seconds of the baked graph (`runtime.Sampler`) and the host loop on the same inputs; their ratio
    (baked / host: the overhead ratio) and the largest difference of their images."""
    scale = float(np.asarray(feeds[GUIDANCE]).reshape(-1)[0])
    if not np.all(np.asarray(feeds[GUIDANCE]) == scale):
        raise S4SError("the host-loop pipeline takes one guidance scale for the batch")

    def run_baked():
        return baked(noise=feeds[NOISE], prompt_embeds=feeds[PROMPT_EMBEDS],
                     negative_prompt_embeds=feeds[NEGATIVE_PROMPT_EMBEDS], guidance_scale=scale)

    def run_host():
        return host(feeds[NOISE], feeds[PROMPT_EMBEDS], feeds[NEGATIVE_PROMPT_EMBEDS], scale, steps)

    diff = float(np.abs(run_baked() - run_host()).max())
    baked_s, host_s = median_seconds(run_baked, repeats), median_seconds(run_host, repeats)
    return {"baked_s": baked_s, "host_loop_s": host_s, "overhead_ratio": baked_s / host_s, "max_abs_diff": diff,
            "nfe": steps, "batch": int(feeds[NOISE].shape[0]), "guidance_scale": scale}
