"""Importing and running the runtime never imports torch (checked in a fresh interpreter with torch blocked)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import importlib, pkgutil, sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"runtime code imported {name}")

    sys.meta_path.insert(0, BlockTorch())
    import s4s_export.runtime as rt
    from s4s_export.errors import S4SError
    for module in pkgutil.iter_modules(rt.__path__):
        importlib.import_module(f"s4s_export.runtime.{module.name}")
    graph, out = sys.argv[1], sys.argv[2]
    images = rt.Sampler.load(graph)(seed=0, n=4)
    rt.write_png(f"{out}/grid.png", rt.make_grid(rt.to_uint8(images)))
    rt.write_triton_repository(graph, f"{out}/triton")
    try:
        rt.build_engine(graph)
    except S4SError:
        pass
    assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
    print("torch-free", images.shape)
""")


def test_runtime_never_imports_torch(graphs, tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(graphs["uncond"]), str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "torch-free (4, 1, 6, 5)" in result.stdout
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "triton" / "uncond" / "config.pbtxt").is_file()
