"""The Python runtime on onnxruntime CPU: same images as a bare session, seeding, batching, threads."""

from __future__ import annotations

import threading

import numpy as np
import onnxruntime as ort
import pytest
from runtime_helpers import CHW, NUM_CLASSES

from s4s_export.errors import S4SError
from s4s_export.runtime import Sampler, seeded_noise
from s4s_export.runtime.inputs import plan_batches


def bare(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_unconditional_matches_bare_session(graphs):
    noise = np.random.default_rng(0).standard_normal((3, *CHW), dtype=np.float32)
    sampler = Sampler.load(graphs["uncond"])
    assert sampler.image_shape == CHW and not sampler.conditional
    np.testing.assert_array_equal(sampler(noise=noise), bare(graphs["uncond"], {"noise": noise}))


def test_conditional_matches_bare_session_and_uses_labels(graphs):
    noise = np.random.default_rng(1).standard_normal((4, *CHW), dtype=np.float32)
    labels = np.array([0, 1, 2, NUM_CLASSES])
    sampler = Sampler.load(graphs["cond"])
    assert sampler.conditional and sampler.num_classes == NUM_CLASSES
    out = sampler(noise=noise, class_labels=labels, guidance_scale=2.0)
    expected = bare(graphs["cond"], {"noise": noise, "class_labels": labels,
                                     "guidance_scale": np.array(2.0, np.float32)})
    np.testing.assert_array_equal(out, expected)
    assert not np.allclose(out, sampler(noise=noise, class_labels=labels, guidance_scale=0.0))
    same = sampler(noise=np.repeat(noise[:1], 2, 0), class_labels=[0, 1], guidance_scale=2.0)
    assert not np.allclose(same[0], same[1]), "labels must change the images"


def test_per_sample_guidance_scales(graphs):
    """guidance_scale [B]: a number is repeated, an array gives each image its scale (as if run alone with it),
    and split runs take their slice of the scales."""
    noise = seeded_noise(CHW, 5, seed=9)
    labels, scales = [0, 1, 2, 1, 0], [0.0, 1.0, 2.5, 4.0, -1.0]
    sampler = Sampler.load(graphs["cond_per_sample"])
    assert sampler.spec.inputs["guidance_scale"].shape == (None,)
    together = sampler(noise=noise, class_labels=labels, guidance_scale=scales)
    np.testing.assert_array_equal(together, bare(graphs["cond_per_sample"], {
        "noise": noise, "class_labels": np.array(labels), "guidance_scale": np.array(scales, np.float32)}))
    for i in range(5):
        alone = sampler(noise=noise[i:i + 1], class_labels=labels[i], guidance_scale=scales[i])
        assert np.abs(alone[0] - together[i]).max() <= 1e-5
    np.testing.assert_array_equal(sampler(noise=noise, class_labels=labels, guidance_scale=2.5),
                                  sampler(noise=noise, class_labels=labels, guidance_scale=np.full(5, 2.5)))
    np.testing.assert_array_equal(Sampler.load(graphs["cond_per_sample"], max_batch=2)(
        noise=noise, class_labels=labels, guidance_scale=np.array(scales)), together)
    # the older form, guidance_scale []: one number for the batch, as before
    scalar = Sampler.load(graphs["cond"])
    np.testing.assert_array_equal(scalar(noise=noise, class_labels=labels, guidance_scale=np.array(2.5)),
                                  bare(graphs["cond"], {"noise": noise, "class_labels": np.array(labels),
                                                        "guidance_scale": np.array(2.5, np.float32)}))


def test_default_guidance_is_one(graphs):
    sampler = Sampler.load(graphs["cond"])
    np.testing.assert_array_equal(sampler(seed=3, n=2, class_labels=1),
                                  sampler(seed=3, n=2, class_labels=1, guidance_scale=1.0))


def test_uint8_output_passes_through(graphs):
    images = Sampler.load(graphs["uint8"])(seed=0, n=2)
    assert images.dtype == np.uint8 and images.shape == (2, CHW[1], CHW[2], CHW[0])


def test_seeded_noise_is_per_sample_and_reproducible(graphs):
    sampler = Sampler.load(graphs["uncond"])
    five = sampler(seed=7, n=5)
    np.testing.assert_array_equal(sampler(seed=7, n=2), five[:2])
    np.testing.assert_array_equal(five, sampler(noise=seeded_noise(CHW, 5, 7)))
    assert not np.allclose(five, sampler(seed=8, n=5))
    assert not np.allclose(sampler(n=2), sampler(n=2)), "no seed: fresh noise each call"
    noise = seeded_noise(CHW, 4, 0, start=2)
    np.testing.assert_array_equal(noise[:2], seeded_noise(CHW, 4, 0)[2:4])


def test_large_requests_are_split(graphs):
    noise = np.random.default_rng(2).standard_normal((7, *CHW), dtype=np.float32)
    labels = np.arange(7) % NUM_CLASSES
    whole = Sampler.load(graphs["cond"])(noise=noise, class_labels=labels)
    split = Sampler.load(graphs["cond"], max_batch=3)
    assert split.spec.batch_range == (1, 3)
    np.testing.assert_allclose(split(noise=noise, class_labels=labels), whole, atol=1e-6)


def test_fixed_batch_graph(graphs):
    sampler = Sampler.load(graphs["fixed2"])
    assert sampler.spec.batch_range == (2, 2)
    assert sampler(seed=0, n=6).shape == (6, *CHW)
    with pytest.raises(S4SError, match="cannot be split"):
        sampler(seed=0, n=3)


def test_max_batch_never_goes_below_a_fixed_batch(graphs):
    sampler = Sampler.load(graphs["fixed2"], max_batch=1)
    assert sampler.spec.batch_range == (2, 2), "a max_batch below the graph's batch cannot shrink it"
    assert sampler(seed=0, n=4).shape == (4, *CHW)


@pytest.mark.parametrize("batch_range,max_batch,expected", [((1, None), 16, (1, 16)), ((1, 8), 16, (1, 8)),
                                                             ((1, 8), 3, (1, 3)), ((4, 4), 2, (4, 4)),
                                                             ((32, 32), 16, (32, 32)), ((2, 8), 1, (2, 2))])
def test_limit_batch(batch_range, max_batch, expected):
    from s4s_export.runtime.spec import GraphSpec, TensorSpec

    spec = GraphSpec({"noise": TensorSpec("noise", np.dtype("float32"), (None, *CHW))},
                     TensorSpec("images", np.dtype("float32"), (None, *CHW)), batch_range)
    spec.limit_batch(max_batch)
    assert spec.batch_range == expected


def test_plan_batches_matches_brute_force():
    for lo in range(1, 6):
        for hi in range(lo, 9):
            for batch in range(1, 40):
                feasible = any(k * lo <= batch <= k * hi for k in range(1, batch + 1))
                if not feasible:
                    with pytest.raises(S4SError):
                        plan_batches(batch, (lo, hi))
                    continue
                sizes = plan_batches(batch, (lo, hi))
                assert sum(sizes) == batch and all(lo <= s <= hi for s in sizes)
                assert len(sizes) == -(-batch // hi), "fewest runs"
                assert sizes == sorted(sizes, reverse=True)
    assert plan_batches(100, (1, None)) == [100]


def test_threads_share_a_sampler(graphs):
    sampler = Sampler.load(graphs["uncond"], threads=1)
    expected = {s: sampler(seed=s, n=3) for s in range(4)}
    results, errors = {}, []

    def work(s):
        try:
            for _ in range(5):
                results[s] = sampler(seed=s, n=3)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for s in range(4):
        np.testing.assert_array_equal(results[s], expected[s])


def test_sidecar_and_metadata_reach_info(graphs, tmp_path):
    info = Sampler.load(graphs["cond"]).info
    assert info["nfe"] == 1 and info["model"]["num_classes"] == NUM_CLASSES
    bare = tmp_path / "no_sidecar.onnx"
    bare.write_bytes(graphs["cond"].read_bytes())
    sampler = Sampler.load(bare)
    assert sampler.num_classes == NUM_CLASSES and sampler.info["solver"] == "tiny", "metadata_props alone suffice"
    (tmp_path / "no_sidecar.json").write_text('{"guidance_scale": 2.5}')
    np.testing.assert_array_equal(Sampler.load(bare)(seed=0, n=2, class_labels=1),
                                  sampler(seed=0, n=2, class_labels=1, guidance_scale=2.5))
