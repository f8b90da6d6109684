"""Teacher pairs: cached on disk, reused as prefixes, extended by the tail only, rebuilt when corrupt."""

import logging

import pytest
import torch

from s4s_export import teacher as teacher_mod
from s4s_export.learn import teacher_cache
from s4s_export.learn.teacher_cache import cache_path, teacher_pairs
from s4s_export.noise import noise_set
from s4s_export.teacher import TeacherSpec

FAST = TeacherSpec("unipc3", 12, "logsnr")


@pytest.fixture
def counting(monkeypatch):
    """Count the samples the teacher is run on."""
    calls = []

    def run(denoiser, teacher, noise, cond=None, batch=64, desc="teacher"):
        calls.append(noise.shape[0])
        return teacher_mod.run_teacher(denoiser, teacher, noise, cond, batch, desc)

    monkeypatch.setattr(teacher_cache, "run_teacher", run)
    return calls


def test_cached_prefix_and_tail(gmm, tmp_path, counting):
    a = teacher_pairs(tmp_path, gmm, FAST, seed=5, count=6)
    assert counting == [6]
    b = teacher_pairs(tmp_path, gmm, FAST, seed=5, count=4)  # a prefix: no teacher run
    assert counting == [6] and torch.equal(b.target, a.target[:4]) and torch.equal(b.noise, a.noise[:4])
    c = teacher_pairs(tmp_path, gmm, FAST, seed=5, count=9)  # only the 3 missing samples are computed
    assert counting == [6, 3] and torch.equal(c.target[:6], a.target)
    direct = teacher_mod.run_teacher(gmm, FAST, noise_set(gmm.info.shape, 9, 5))
    assert torch.allclose(c.target, direct, rtol=0, atol=1e-6)
    teacher_pairs(tmp_path, gmm, FAST, seed=6, count=2)  # another seed is another cache file
    assert counting == [6, 3, 2] and len(list(tmp_path.glob("*.safetensors"))) == 2


def test_corrupt_cache_is_reported_and_rebuilt(gmm, tmp_path, counting, caplog):
    good = teacher_pairs(tmp_path, gmm, FAST, seed=0, count=4)
    path = cache_path(tmp_path, gmm.identity(), FAST, 0)
    path.write_bytes(path.read_bytes()[:100])  # truncated, as after a crash of some other writer
    with caplog.at_level(logging.WARNING, logger="s4s_export.learn"):
        again = teacher_pairs(tmp_path, gmm, FAST, seed=0, count=4)
    assert counting == [4, 4]
    assert any("teacher cache" in r.message and "corrupt" in r.message and "rebuilding" in r.message
               for r in caplog.records)
    assert torch.equal(again.target, good.target)
    teacher_pairs(tmp_path, gmm, FAST, seed=0, count=4)  # the rebuilt file is used as is
    assert counting == [4, 4]


def test_stale_header_is_rebuilt(gmm, tmp_path, counting, caplog):
    from safetensors.torch import load_file, save_file

    teacher_pairs(tmp_path, gmm, FAST, seed=0, count=3)
    path = cache_path(tmp_path, gmm.identity(), FAST, 0)
    save_file(load_file(str(path)), str(path), metadata={"format": "something-else"})
    with caplog.at_level(logging.WARNING, logger="s4s_export.learn"):
        teacher_pairs(tmp_path, gmm, FAST, seed=0, count=3)
    assert counting == [3, 3] and "format" in caplog.text


def test_interrupted_generation_resumes_finished_chunks(tmp_path, gmm, monkeypatch):
    from s4s_export.learn.teacher_cache import chunk_spans

    assert chunk_spans(0, 10, 4) == [(0, 4), (4, 8), (8, 10)] and chunk_spans(5, 9, 4) == [(5, 8), (8, 9)]
    whole = teacher_pairs(tmp_path / "whole", gmm, FAST, seed=3, count=10, batch=4)
    calls = []

    def flaky(denoiser, teacher, noise, cond=None, batch=64, desc=""):
        calls.append(noise.shape[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return teacher_mod.run_teacher(denoiser, teacher, noise, cond, batch, desc)

    monkeypatch.setattr(teacher_cache, "run_teacher", flaky)
    with pytest.raises(KeyboardInterrupt):
        teacher_pairs(tmp_path / "cut", gmm, FAST, seed=3, count=10, batch=4)
    assert len(list((tmp_path / "cut").glob("*.parts/*.safetensors"))) == 2
    calls.clear()
    again = teacher_pairs(tmp_path / "cut", gmm, FAST, seed=3, count=10, batch=4)
    assert calls == [2]  # only the unfinished chunk
    assert torch.equal(again.target, whole.target) and not list((tmp_path / "cut").glob("*.parts"))
    (cut,), (ref,) = (list((tmp_path / d).glob("*.safetensors")) for d in ("cut", "whole"))
    (a, ma), (b, mb) = (_contents(p) for p in (cut, ref))  # safetensors orders header keys at random
    assert a.numpy().tobytes() == b.numpy().tobytes() and ma == mb


def _contents(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.get_tensor("target"), f.metadata()
