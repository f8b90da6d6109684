"""python:MODULE:FACTORY references: a Denoiser as it is, a k-diffusion-style wrapper adapted to one."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from s4s_export.errors import S4SError
from s4s_export.evaluate import score
from s4s_export.families.pyfactory import check_python, load_python
from s4s_export.heldout import held_out_set
from s4s_export.modelref import ModelRef, check_model, load_model
from s4s_export.solver_ref import resolve_solvers

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "examples" / "kdiffusion_wrapper.py"


def ref(target: str, **kw) -> SimpleNamespace:
    return SimpleNamespace(target=target, checkpoint=kw.get("checkpoint"),
                           random_weights=kw.get("random_weights", False), config=kw.get("config"))


def eval_numbers(denoiser) -> list[float]:
    spec = check_model(ModelRef("demo"))
    held = held_out_set(denoiser, spec.teacher, samples=8, batch=8)
    solvers = resolve_solvers(["euler", "dpmpp2m"], [4, 6], denoiser=denoiser, schedule=spec.schedule)
    return [score(denoiser, s.table, held, batch=8)["rmse_vs_teacher"] for s in solvers]


def test_kdiffusion_wrapper_gives_demo_eval_numbers():
    wrapped = load_python(ref(f"{WRAPPER}:make"))
    demo = load_model("demo")
    assert wrapped.info.shape == demo.info.shape
    assert (wrapped.info.sigma_min, wrapped.info.sigma_max) == (demo.info.sigma_min, demo.info.sigma_max)
    assert not wrapped.training and not any(p.requires_grad for p in wrapped.parameters())
    x = torch.randn(3, *demo.info.shape)
    sigma = torch.tensor([0.01, 1.0, 60.0])
    torch.testing.assert_close(wrapped(x, sigma), demo(x, sigma), rtol=1e-5, atol=1e-5)
    ours, theirs = eval_numbers(wrapped), eval_numbers(demo)
    assert ours == pytest.approx(theirs, rel=1e-4)
    assert len(set(ours)) == len(ours)  # four distinct (solver, NFE) results, not one number repeated


def test_dotted_module_from_current_directory(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from s4s_export.networks.demo import load_demo\n"
        "def make():\n    return load_demo()\n")
    monkeypatch.chdir(tmp_path)
    spec = check_python(ref("my_models:make"))
    assert (spec.name, spec.resolution, spec.conditioning) == ("python:my_models:make", "1x16x16", "none")
    assert spec.load().identity() == load_model("demo").identity()  # a Denoiser is used as it is


def test_class_labels_are_passed_as_cond(tmp_path):
    (tmp_path / "labels.py").write_text(
        "import torch\n"
        "class M:\n"
        "    shape, sigma_min, sigma_max, num_classes = (1, 2, 2), torch.tensor(0.1), torch.tensor(10.0), 3\n"
        "    def __call__(self, x, sigma, cond=None):\n"
        "        return x * 0 + (cond.view(-1, 1, 1, 1).to(x.dtype) if cond is not None else -1.0)\n"
        "def make():\n    return M()\n")
    d = load_python(ref(f"{tmp_path / 'labels.py'}:make"))
    assert (d.info.conditioning, d.info.num_classes, d.info.sigma_max) == ("class", 3, 10.0)
    x = torch.zeros(2, 1, 2, 2)
    assert d(x, 1.0, torch.tensor([2, 3]))[:, 0, 0, 0].tolist() == [2.0, 3.0]
    assert d(x, 1.0)[:, 0, 0, 0].tolist() == [-1.0, -1.0]


@pytest.mark.parametrize("body, message", [
    ("def make():\n    return lambda x, sigma: x\n", "lacks attribute(s) shape, sigma_min, sigma_max"),
    (("class M:\n    shape, sigma_min, sigma_max = (1, 2), 0.1, 10.0\n    def __call__(self, x, s): return x\n"
     "def make():\n    return M()\n"), "it must be (C, H, W)"),
    (("class M:\n    shape, sigma_min, sigma_max = (1, 2, 2), 5.0, 1.0\n    def __call__(self, x, s): return x\n"
     "def make():\n    return M()\n"), "need 0 < sigma_min < sigma_max"),
    ("def make():\n    return 3\n", "must return a Denoiser or a k-diffusion-style"),
    ("def make():\n    raise RuntimeError('no weights here')\n", "failed: RuntimeError: no weights here"),
    ("import not_a_module_anywhere\n", "No module named 'not_a_module_anywhere'"),
    ("make = 3\n", "has no callable 'make'"),
])
def test_bad_factories_get_one_line(tmp_path, body, message):
    path = tmp_path / "bad.py"
    path.write_text(body)
    with pytest.raises(S4SError, match=re.escape(message)) as e:
        load_python(ref(f"{path}:make"))
    assert "\n" not in str(e.value)


def test_wrong_output_shape_is_one_line(tmp_path):
    (tmp_path / "m.py").write_text(
        "class M:\n    shape, sigma_min, sigma_max = (1, 2, 2), 0.1, 10.0\n"
        "    def __call__(self, x, s): return x[:, :, :1]\n"
        "def make():\n    return M()\n")
    d = load_python(ref(f"{tmp_path / 'm.py'}:make"))
    with pytest.raises(S4SError, match=r"returned \(1, 1, 1, 2\) for input \(1, 1, 2, 2\)"):
        d(torch.zeros(1, 1, 2, 2), 1.0)


@pytest.mark.parametrize("target, kw, message", [
    ("no_factory_part", {}, "is not python:MODULE:FACTORY"),
    ("mod:not-an-identifier", {}, "is not python:MODULE:FACTORY"),
    ("missing/file.py:make", {}, "python module file not found"),
    (f"{WRAPPER}:make", {"checkpoint": "x.pt"}, "--checkpoint does not apply"),
    (f"{WRAPPER}:make", {"random_weights": True}, "--random-weights does not apply"),
])
def test_bad_references(target, kw, message):
    with pytest.raises(S4SError, match=message):
        load_python(ref(target, **kw))
