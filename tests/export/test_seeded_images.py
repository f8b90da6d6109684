"""One seed, one set of images: eval's noise (noise_set, through the PyTorch sampler) and the runtime's seeded
noise (through the exported graph) give the same images to the graph-vs-PyTorch tolerance."""

import numpy as np

from s4s_export.export.verify import relative_error
from s4s_export.modelref import load_model
from s4s_export.noise import VALIDATION_SEED, noise_set
from s4s_export.runtime import Sampler as RuntimeSampler
from s4s_export.sampler import Sampler
from s4s_export.solvers import make_solver


def test_eval_and_runtime_images_agree_for_a_seed(built):
    result = built(model="tiny", solver="dpmpp3m", nfe=3, batch=(1, 5))
    model = load_model("tiny")
    solver = make_solver("dpmpp3m", 3, "edm", model.info.sigma_min, model.info.sigma_max)
    for seed in (0, VALIDATION_SEED):
        noise = noise_set((1, 8, 8), 4, seed)
        runtime = RuntimeSampler.load(result.onnx_path)(seed=seed, n=4)
        eval_images = Sampler(model, solver).float()(noise).clamp(-1, 1).numpy()
        assert relative_error(runtime, eval_images) <= 1e-4
        assert np.abs(runtime - noise.numpy().clip(-1, 1)).max() > 0.1  # the graph did something
    other = RuntimeSampler.load(result.onnx_path)(seed=1, n=4)
    assert relative_error(other, RuntimeSampler.load(result.onnx_path)(seed=0, n=4)) > 0.1
