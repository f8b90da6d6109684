"""Writing and moving exported graphs: the .onnx and, past 2 GiB, its external weights `<file>.data`.

Every file lands atomically (s4s_export/fileio.py): a reader sees the old graph or the complete new one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from ..contract import external_data_path
from ..fileio import atomic_write, replace_with

PROTOBUF_LIMIT = 2**31 - 1  # a single .onnx file must stay below 2 GiB; beyond it weights go to `<file>.data`


def proto_bytes(proto: onnx.ModelProto) -> int:
    """The serialized size of `proto`, summed part by part: protobuf cannot size a message past 2 GiB."""
    graph = proto.graph
    return sum(t.ByteSize() for t in graph.initializer) + sum(n.ByteSize() for n in graph.node) + sum(
        v.ByteSize() for v in (*graph.input, *graph.output, *graph.value_info))


def save_onnx(proto: onnx.ModelProto, path: str | Path, external_data: bool | None = None) -> list[Path]:
    """Write the graph (atomically); weights go to `<file>.data` beside it when the file would pass 2 GiB.

    `external_data=None` decides by size. Returns the files written. With external data, onnx moves
    the weights out of `proto` while writing: do not reuse it afterwards.
    """
    path = Path(path)
    if external_data is None:
        external_data = proto_bytes(proto) > PROTOBUF_LIMIT - (64 << 20)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = external_data_path(path)
    if not external_data:
        atomic_write(path, lambda tmp: onnx.save_model(proto, str(tmp)))
        data.unlink(missing_ok=True)
        return [path]
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:  # onnx writes both files
        tmp_path = Path(tmp) / path.name
        onnx.save_model(proto, str(tmp_path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
        if not (Path(tmp) / data.name).exists():  # every tensor under the 1 KiB threshold: nothing went out
            replace_with(tmp_path, path)
            data.unlink(missing_ok=True)
            return [path]
        replace_with(Path(tmp) / data.name, data)
        replace_with(tmp_path, path)
    return [path, data]


def move_onnx(files: list[Path], dest: str | Path) -> list[Path]:
    """Move a graph written by `save_onnx` (`files`: the graph[, its .data]) to `dest`, replacing what is there.

    External weights become `<dest>.data`, the graph rewritten to point there when the name changes;
    they move before the graph, so the graph never appears without them. Without external weights, a
    stale `<dest>.data` of an earlier graph is removed after the graph is replaced. Returns the new paths.
    """
    src, dest = Path(files[0]), Path(dest)
    data = external_data_path(dest)
    if len(files) == 1:
        replace_with(src, dest)
        data.unlink(missing_ok=True)
        return [dest]
    if Path(files[1]).name != data.name:
        model = onnx.load(str(src), load_external_data=False)
        tensors = [*model.graph.initializer, *(a.t for n in model.graph.node for a in n.attribute if a.HasField("t"))]
        for tensor in tensors:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = data.name
        atomic_write(src, lambda tmp: onnx.save_model(model, str(tmp)))
    replace_with(files[1], data)
    replace_with(src, dest)
    return [dest, data]
