"""Learned solvers where users already sample: k-diffusion/ComfyUI samplers and diffusers schedulers."""
