"""The files a build leaves: only verified graphs with their sidecars; failed graphs aside; external data; twins."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from s4s_export.errors import S4SError
from s4s_export.export import build, onnx_files
from s4s_export.export.build import BuildRequest, build_onnx
from s4s_export.export.verify import Check, compare_runtime
from s4s_export.modelref import ModelRef
from s4s_export.runtime import Sampler

GOOD = dict(model="gmm", solver="euler", nfe=1)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry of `folder` (hidden ones included) with its bytes; folders map to b''."""
    return {p.name: (p.read_bytes() if p.is_file() else b"") for p in folder.iterdir()}


def run(path: Path, noise: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"noise": noise})[0]


def failing_check(*args) -> Check:
    check = compare_runtime(*args)  # the real comparison runs on the staged graph, then fails
    return Check(check.name, False, "forced failure")


@pytest.mark.parametrize("external", [False, True])
def test_failed_verification_keeps_the_previous_graph_and_sidecar(monkeypatch, tmp_path, external):
    good = build_onnx(BuildRequest(**GOOD, batch=(1, 2), out=str(tmp_path), external_data=external))
    before = snapshot(tmp_path)
    assert sorted(before) == sorted(p.name for p in (*good.files, good.sidecar))
    monkeypatch.setattr(build, "compare_runtime", failing_check)
    with pytest.raises(S4SError, match=r"verification failed \(ORT .*forced failure\); the graph was kept as .*"
                                       r"\.failed\.onnx for inspection and .* is unchanged"):
        build_onnx(BuildRequest(**GOOD, batch=(2, 2), out=str(tmp_path), external_data=external))
    after = snapshot(tmp_path)
    failed = tmp_path / good.onnx_path.name.replace(".onnx", ".failed.onnx")
    assert {k: v for k, v in after.items() if k in before} == before  # byte-identical
    assert sorted(set(after) - set(before)) == sorted([failed.name] + [failed.name + ".data"] * external)
    assert after[failed.name] != before[good.onnx_path.name]  # the failed graph is another one (static batch 2)
    noise = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(failed, noise), run(good.onnx_path, noise), atol=1e-6)  # loads, with its .data
    locations = {e.value for t in onnx.load(str(failed), load_external_data=False).graph.initializer
                 for e in t.external_data if e.key == "location"}
    assert locations == ({failed.name + ".data"} if external else set())  # its own weights, not the good graph's


def test_an_interrupted_build_changes_nothing(monkeypatch, tmp_path):
    build_onnx(BuildRequest(**GOOD, batch=(1, 2), out=str(tmp_path)))
    before = snapshot(tmp_path)

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "compare_runtime", interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_onnx(BuildRequest(**GOOD, batch=(2, 2), out=str(tmp_path)))
    assert snapshot(tmp_path) == before  # no new graph, no staging folder left behind


def test_a_new_build_replaces_graph_data_and_sidecar_together(tmp_path):
    first = build_onnx(BuildRequest(**GOOD, batch=(1, 2), out=str(tmp_path), external_data=True))
    second = build_onnx(BuildRequest(**GOOD, batch=(2, 2), out=str(tmp_path)))
    assert second.onnx_path == first.onnx_path and second.files == [second.onnx_path]
    assert sorted(snapshot(tmp_path)) == sorted([second.onnx_path.name, second.sidecar.name])  # the old .data went
    assert json.loads(second.sidecar.read_text())["batch_range"] == [2, 2]


@pytest.fixture(scope="module")
def twin_external(tmp_path_factory):
    """A `--random-weights` twin built with the 2 GiB limit lowered to a few KiB: external data decided by size."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(onnx_files, "PROTOBUF_LIMIT", (64 << 20) + 4096)
        return build_onnx(BuildRequest(model=ModelRef("tiny-preset", random_weights=True), solver="euler", nfe=1,
                                       batch=(1, 2), out=str(tmp_path_factory.mktemp("twin"))))


def test_external_data_when_the_graph_passes_the_limit(twin_external):
    path, data = twin_external.files
    assert data == path.with_name(path.name + ".data") and data.stat().st_size > path.stat().st_size
    assert twin_external.verification.ok and twin_external.verification.stats["external_data"]
    ort_check = next(c for c in twin_external.verification.checks if c.name.startswith("ORT"))
    assert ort_check.ok and "max relative error" in ort_check.detail
    onnx.checker.check_model(str(path), full_check=True)
    noise = np.random.default_rng(4).standard_normal((3, 1, 8, 8)).astype(np.float32)
    sampler = Sampler.load(path, providers=["cpu"])
    np.testing.assert_array_equal(sampler(noise), run(path, noise))
    assert sampler.info["verification"]["ok"] and sampler.info["nfe"] == 1


def test_a_twin_is_named_as_a_twin_in_every_output(twin_external):
    path = twin_external.onnx_path
    assert path.name == "tiny-preset-twin-euler-nfe1-fp32.onnx"
    assert twin_external.sidecar.name == "tiny-preset-twin-euler-nfe1-fp32.json"
    model = onnx.load(str(path), load_external_data=False)
    assert model.doc_string.startswith("tiny-preset-twin: 1-step euler sampler")
    assert json.loads(twin_external.sidecar.read_text())["model"]["name"] == "tiny-preset-twin"


def test_graph_size_is_summed_part_by_part():
    """`save_onnx` decides external data by `proto_bytes`, which protobuf can compute past 2 GiB (the whole
    ModelProto's ByteSize cannot be serialized there); on a small graph it equals the proto's size to the bytes
    of the model header."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from s4s_export.export.onnx_files import proto_bytes

    weights = [numpy_helper.from_array(np.full((300, 300), i, np.float32), f"w{i}") for i in range(3)]
    nodes = [helper.make_node("Add", ["x" if i == 0 else f"y{i - 1}", f"w{i}"], [f"y{i}"]) for i in range(3)]
    io = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [300, 300]) for n in ("x", "y2")]
    model = helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:], weights))
    assert 0 <= model.ByteSize() - proto_bytes(model) <= 256
    assert proto_bytes(model) > 3 * 300 * 300 * 4


def test_forced_external_data_with_only_small_tensors_keeps_one_file(tmp_path):
    """`external_data=True` on a graph whose tensors all sit under onnx's 1 KiB threshold: onnx writes no .data
    file, so the graph is written whole and no stale .data stays beside it."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from s4s_export.export.onnx_files import save_onnx

    io = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [4]) for n in ("x", "y")]
    model = helper.make_model(helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", io[:1], io[1:],
                                                [numpy_helper.from_array(np.ones(4, np.float32), "w")]))
    path = tmp_path / "small.onnx"
    (tmp_path / "small.onnx.data").write_bytes(b"stale")
    assert save_onnx(model, path, external_data=True) == [path]
    assert not (tmp_path / "small.onnx.data").exists()
    onnx.checker.check_model(onnx.load(str(path)))
