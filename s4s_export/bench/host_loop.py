"""The pipeline as diffusers/Optimum users run it on ONNX Runtime, beside which `bench` times the baked graph.

Host-loop pipeline (Optimum's ORTStableDiffusionPipeline layout): the UNet and the VAE decoder as two
separate ONNX Runtime sessions, a diffusers scheduler stepping on the host, classifier-free guidance as
batch doubling (one UNet call per step on [uncond, cond]), then the decoder session. The two graphs are
made by the exporter that makes the baked graph (export/onnx_export.py: dynamo, the same graph passes,
weights in a .data file past 2 GiB), so a comparison measures the loop, not two exporters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import S4SError
from ..export.onnx_export import compact, export_model
from ..export.onnx_files import save_onnx

UNET_FILE, DECODER_FILE = "unet.onnx", "vae_decoder.onnx"
EXPORT_BATCH = (1, 128)  # the UNet runs on the doubled batch: 2 x bench's largest (64)


class UNetCall(nn.Module):
    """`unet(sample, timestep [B], encoder_hidden_states) -> noise prediction`, Optimum's UNet graph signature."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample


class Decode(nn.Module):
    """`vae.decode(latent_sample) -> sample`, Optimum's VAE decoder graph signature (unscaled latents in)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent_sample).sample


def _export(module: nn.Module, inputs: dict[str, torch.Tensor], output: str, path: Path) -> None:
    proto = export_model(module.eval(), inputs, EXPORT_BATCH, output_name=output)
    compact(proto)
    save_onnx(proto, path)  # past 2 GiB (SD's UNet) the weights go to a .data file


def export_host_graphs(unet: nn.Module, vae: nn.Module, folder: Path, text_length: int) -> tuple[Path, Path]:
    """Write the UNet (`unet.onnx`) and VAE decoder (`vae_decoder.onnx`) graphs, dynamic batch, into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    c, s = unet.config.in_channels, unet.config.sample_size
    d = unet.config.cross_attention_dim
    with torch.inference_mode():
        _export(UNetCall(unet), {"sample": torch.randn(2, c, s, s), "timestep": torch.full((2,), 500.0),
                                 "encoder_hidden_states": torch.randn(2, text_length, d)},
                "out_sample", folder / UNET_FILE)
        _export(Decode(vae), {"latent_sample": torch.randn(2, vae.config.latent_channels, s, s)}, "sample",
                folder / DECODER_FILE)
    return folder / UNET_FILE, folder / DECODER_FILE


def ort_session(path: Path, provider: str, threads: int | None):
    """An onnxruntime session on `provider` (`cpu` or `cuda`) with default graph optimisation, as Optimum opens it."""
    import onnxruntime as ort

    from ..runtime.onnxruntime_runner import provider_name

    full = provider_name(provider)
    if full not in ort.get_available_providers():
        raise S4SError(f"this onnxruntime ({ort.__version__}) lacks {provider}: it has "
                       f"{', '.join(ort.get_available_providers())}; CUDA needs `pip install onnxruntime-gpu`")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=[full])


@dataclass
class HostLoopPipeline:
    """UNet and VAE decoder sessions plus a diffusers scheduler: Optimum's way of running SD on ONNX Runtime."""

    unet: object
    vae: object
    scheduler: object
    scaling_factor: float

    @classmethod
    def open(cls, folder: Path, scheduler, scaling_factor: float, provider: str = "cpu",
             threads: int | None = None) -> HostLoopPipeline:
        """The sessions over `export_host_graphs`' files in `folder`."""
        return cls(ort_session(folder / UNET_FILE, provider, threads),
                   ort_session(folder / DECODER_FILE, provider, threads), scheduler, scaling_factor)

    def __call__(self, noise: np.ndarray, prompt_embeds: np.ndarray, negative_prompt_embeds: np.ndarray,
                 guidance_scale: float, steps: int) -> np.ndarray:
        """Images [B, 3, H, W] in [-1, 1] (clamped), as StableDiffusionPipeline's loop with ORT sessions."""
        self.scheduler.set_timesteps(steps)
        latents = torch.from_numpy(noise) * self.scheduler.init_noise_sigma
        embeds = np.concatenate([negative_prompt_embeds, prompt_embeds]).astype(np.float32)
        for t in self.scheduler.timesteps:
            x = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)
            out = self.unet_call(x.numpy(), np.full(x.shape[0], float(t), np.float32), embeds)
            uncond, cond = np.split(out, 2)
            guided = torch.from_numpy(uncond + guidance_scale * (cond - uncond))
            latents = self.scheduler.step(guided, t, latents).prev_sample
        return np.clip(self.decode((latents / self.scaling_factor).numpy().astype(np.float32)), -1, 1)

    def unet_call(self, sample: np.ndarray, timestep: np.ndarray, encoder_hidden_states: np.ndarray) -> np.ndarray:
        return self.unet.run(None, {"sample": sample, "timestep": timestep,
                                    "encoder_hidden_states": encoder_hidden_states})[0]

    def decode(self, latent_sample: np.ndarray) -> np.ndarray:
        return self.vae.run(None, {"latent_sample": latent_sample})[0]
