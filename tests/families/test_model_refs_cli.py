"""diffusers:, compvis: and python: references through the CLI: one-line errors, `models --model`, and
learn -> eval on a tiny Stable-Diffusion-like pipeline with prompts (latent and pixel distances)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
pytest.importorskip("transformers", reason="the diffusers extra (transformers) is not installed")

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ROOT / "examples" / "families" / "prompts.txt"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "S4S_QUIET": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "s4s_export", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=cwd)


def bad_refs(sd: Path, tmp: Path) -> list[tuple[list[str], str]]:
    (tmp / "empty").mkdir()
    wrong = tmp / "wrong"
    (wrong / "scheduler").mkdir(parents=True)
    (wrong / "config.json").write_text(json.dumps({"_class_name": "UNetMotionModel"}))
    (wrong / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDIMScheduler"}))
    (tmp / "model.ckpt").write_bytes(b"")
    return [
        (["learn", "--model", f"diffusers:{tmp / 'missing'}"], "diffusers folder not found"),
        (["eval", "--model", f"diffusers:{tmp / 'empty'}"], "is not a diffusers model"),
        (["bench", "--model", f"diffusers:{wrong}"], "unsupported diffusers network class 'UNetMotionModel'"),
        (["learn", "--model", f"compvis:{tmp / 'model.ckpt'}"], "needs --config PATH.yaml"),
        (["learn", "--model", "python:no_such_module_here:make"], "cannot import 'no_such_module_here'"),
        (["learn", "--model", f"diffusers:{sd}", "--config", "x.yaml"], "--config applies to compvis"),
        (["learn", "--model", f"diffusers:{sd}", "--nfe", "4"], "needs prompts: --prompts FILE"),
        (["eval", "--model", f"diffusers:{sd}", "--prompts", str(tmp / "none.txt")], "prompts file not found"),
        (["learn", "--model", "gmm", "--prompts", str(PROMPTS)], "apply to text-conditioned models"),
        (["build", "--model", f"diffusers:{sd}", "--solver", "dpmpp3m", "--nfe", "4", "--precision", "vae=fp16",
          "--no-decode", "--out", str(tmp)], "--precision names decoder, but --no-decode leaves the decoder out"),
    ]


def test_bad_references_are_one_line_errors(sd, tmp_path):
    for args, message in bad_refs(sd, tmp_path):
        r = run_cli(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr)
        assert message in lines[0], (args, lines[0])


def test_missing_diffusers_extra_is_one_line(sd):
    code = ("import sys; sys.modules['diffusers'] = None; sys.argv = ['s4s-export', 'models', '--model', "
            f"'diffusers:{sd}']\nfrom s4s_export.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "pip install 's4s-export[diffusers]'" in r.stderr


def test_models_describes_a_reference(sd):
    r = run_cli("models", "--model", f"diffusers:{sd}", "--json")
    assert r.returncode == 0 and r.stderr == "", r.stderr  # diffusers' accelerate notice is silenced
    info = json.loads(r.stdout)
    assert info["family"] == "VPDenoiser" and info["network"] == "UNet2DConditionModel"
    assert info["shape"] == [4, 16, 16] and info["decodes_to"] == [3, 32, 32] and info["decoder"] == "AutoencoderKL"
    assert info["space"] == "vp" and info["conditioning"] == "text"
    assert info["sigma_max"] == pytest.approx(14.6146, abs=1e-3)  # SD's scaled_linear schedule (docs/models.md)


@pytest.mark.slow
def test_learn_then_eval_with_prompts(sd, tmp_path):
    ws = tmp_path / "ws"
    learn = ["learn", "--model", f"diffusers:{sd}", "--prompts", str(PROMPTS), "--nfe", "3", "--samples", "12",
             "--val-samples", "6", "--batch", "6", "--alternations", "1", "--guidance-scale", "2", "--workdir", str(ws),
             "--json"]
    r = run_cli(*learn)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)["results"][0]
    doc = json.loads(Path(row["solver_file"]).read_text())
    cond = doc["provenance"]["conditioning"] if "provenance" in doc else doc["conditioning"]
    assert cond["guidance_scale"] == 2.0 and cond["prompts"]["count"] == 25
    assert cond["prompts"]["held_out"] == [4, 9, 14, 19, 24]
    assert len(list((ws / "teacher").glob("prompts-*.safetensors"))) == 1
    again = run_cli(*learn)
    assert again.returncode == 0 and "prompt embeddings: 25 prompts from the cache" in again.stderr, again.stderr
    assert "pairs from the cache" in again.stderr

    r = run_cli("eval", "--model", f"diffusers:{sd}", "--prompts", str(PROMPTS), "--guidance-scale", "2",
                "--solver", f"{row['solver_file']},dpmpp3m", "--nfe", "3", "--samples", "4", "--json",
                "--plot", str(tmp_path / "q.png"))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["prompts"]["held_out"] == [4, 9, 14, 19, 24] and report["guidance_scale"] == 2.0
    for res in report["results"]:
        assert res["metrics"]["rmse_vs_teacher"] > 0 and res["metrics"]["rmse_pixels_vs_teacher"] > 0
    assert (tmp_path / "q-samples.png").is_file()


def test_pytorch_sampler_takes_a_diffusers_reference(sd):
    import torch

    from s4s_export.families.prompted import PromptConditioned
    from s4s_export.families.text_encoder import encode_prompts
    from s4s_export.modelref import ModelRef, load_model
    from s4s_export.prompts import read_prompts
    from s4s_export.sampler import Sampler
    from s4s_export.solvers import make_solver

    model = load_model(ModelRef(f"diffusers:{sd}"))
    wrapped = PromptConditioned(model, encode_prompts(sd, read_prompts(PROMPTS)[:3]))
    table = make_solver("dpmpp2m", 4, "logsnr", model.info.sigma_min, model.info.sigma_max)
    with torch.no_grad():
        out = Sampler(wrapped, table)(torch.randn(2, *model.info.shape), torch.tensor([0, 2]))
        images = model.decoder(out)
    assert out.shape == (2, 4, 16, 16) and images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
