"""ModelRef: parsing `--model`, the registry of reference kinds, one-line errors, and the shared CLI options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from s4s_export.commands.common import model_ref
from s4s_export.errors import S4SError
from s4s_export.modelref import REF_KINDS, ModelRef, RefKind, check_model, load_model, register_ref_kind
from s4s_export.models import MODELS, ModelSpec


@pytest.mark.parametrize("text,kind,target", [
    ("gmm", "name", "gmm"),
    ("nope", "name", "nope"),  # no prefix: a name (unknown names get the registry's error)
    ("diffusers:/models/sd15", "diffusers", "/models/sd15"),
    ("compvis:/x/model.ckpt", "compvis", "/x/model.ckpt"),
    ("python:pkg.mod:factory", "python", "pkg.mod:factory"),  # the prefix is before the first ':' only
    ("C:\\models\\net.pkl", "C", "\\models\\net.pkl"),
])
def test_kind_and_target(text, kind, target):
    ref = ModelRef(text)
    assert (ref.kind, ref.target) == (kind, target)


def test_a_registered_name_with_a_colon_is_a_name(monkeypatch):
    monkeypatch.setitem(MODELS, "odd:name", MODELS["gmm"])
    assert ModelRef("odd:name").kind == "name" and check_model(ModelRef("odd:name")) is MODELS["gmm"]


@pytest.mark.parametrize("text", ["C:\\models\\net.pkl", "foo:bar", "hf:org/model"])
def test_unknown_prefix_is_one_line_naming_the_kinds(text):
    with pytest.raises(S4SError) as e:
        check_model(ModelRef(text))
    msg = str(e.value)
    assert "\n" not in msg and f"unknown model reference {text!r}" in msg
    assert msg.endswith("--model takes a registered name (see `s4s-export models`) or diffusers:PATH (a "
                        "save_pretrained folder), compvis:PATH.ckpt --config PATH.yaml, python:MODULE:FACTORY")


def test_family_kinds_are_registered_without_torch():
    code = ("import sys\nfrom s4s_export.modelref import REF_KINDS\n"
            "assert {'name', 'diffusers', 'compvis', 'python'} <= set(REF_KINDS), REF_KINDS\n"
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_name_rules_unchanged(tmp_path):
    assert check_model(ModelRef("gmm")) is MODELS["gmm"]
    with pytest.raises(S4SError, match="unknown model 'nope'; choose one of: demo"):
        check_model(ModelRef("nope"))
    with pytest.raises(S4SError, match="model 'gmm' is bundled: --checkpoint and --random-weights apply"):
        check_model(ModelRef("gmm", random_weights=True))
    with pytest.raises(S4SError, match="checkpoint file not found: .*absent.pkl"):
        check_model(ModelRef("cifar10", checkpoint=str(tmp_path / "absent.pkl")))


def test_config_only_for_kinds_that_take_it(monkeypatch, tmp_path):
    with pytest.raises(S4SError, match="--config applies to compvis:PATH.ckpt --config PATH.yaml references, not to"):
        check_model(ModelRef("gmm", config="x.yaml"))
    seen = []
    monkeypatch.setitem(REF_KINDS, "compvis", RefKind(lambda ref: seen.append(ref) or MODELS["gmm"],
                                                      "compvis:PATH.ckpt", accepts_config=True))
    with pytest.raises(S4SError, match="--config applies to compvis:PATH.ckpt references, not to 'gmm'"):
        check_model(ModelRef("gmm", config="x.yaml"))
    ref = ModelRef("compvis:/m.ckpt", config="x.yaml")
    assert check_model(ref) is MODELS["gmm"] and seen == [ref]


def test_registered_kind_loads_through_its_spec(monkeypatch, gmm):
    spec = ModelSpec("kind-test", "test", "1x8x8", "none", lambda: gmm, lambda: True)
    register_ref_kind("test", RefKind(lambda ref: spec if ref.target == "ok" else (_ for _ in ()).throw(
        S4SError(f"no such test model {ref.target!r}")), "test:NAME"))
    try:
        model = load_model(ModelRef("test:ok"))
        assert model is gmm and not model.training and not any(p.requires_grad for p in model.parameters())
        with pytest.raises(S4SError, match="no such test model 'bad'"):
            load_model(ModelRef("test:bad"))
    finally:
        del REF_KINDS["test"]


def test_load_model_takes_a_plain_name(gmm):
    assert load_model("gmm").identity() == gmm.identity()


def test_not_a_denoiser_is_refused(monkeypatch):
    monkeypatch.setitem(MODELS, "broken", ModelSpec("broken", "x", "1x8x8", "none", lambda: object(), lambda: True))
    with pytest.raises(S4SError, match="model 'broken' did not load as a denoiser"):
        load_model(ModelRef("broken"))


def test_cli_args_round_trip():
    ref = ModelRef("cifar10", checkpoint="/w/x.pkl", random_weights=False, config=None)
    assert ref.cli_args() == ["--model", "cifar10", "--checkpoint", "/w/x.pkl"]
    assert ModelRef("ffhq", random_weights=True).cli_args() == ["--model", "ffhq", "--random-weights"]


def test_shared_options_build_a_checked_ref():
    assert model_ref("gmm") == ModelRef("gmm")
    with pytest.raises(S4SError, match="unknown model reference"):
        model_ref("bogus:thing")


def test_importing_modelref_does_not_import_torch():
    code = "import sys, s4s_export.modelref, s4s_export.commands.common; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


@pytest.mark.parametrize("command", ["learn", "eval", "build", "bench"])
def test_every_model_command_gives_the_one_line_error(command):
    r = subprocess.run([sys.executable, "-m", "s4s_export", command, "--model", "C:\\models\\net.pkl"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: unknown model reference 'C:\\\\models\\\\net.pkl'")
    assert "--model takes a registered name" in r.stderr


def test_config_without_compvis_from_the_cli():
    r = subprocess.run([sys.executable, "-m", "s4s_export", "eval", "--model", "gmm", "--config", "x.yaml"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: --config applies to") and r.stderr.count("\n") == 1


def test_build_model_options_need_model():
    r = subprocess.run([sys.executable, "-m", "s4s_export", "build", "--random-weights"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "go with --model" in r.stderr

