"""Every TensorRT and CUDA runtime name our code uses exists in the real TensorRT 10.x and 11.x bindings.

TensorRT cannot run on our machines (docs/runtime.md "What is verified and what is not"), but its Python bindings
wheels come from PyPI
and import on a CPU machine once three stub libraries export the 9 C symbols they link against. The
names checked are collected from the runtime's own source, so the check cannot drift from the code:

- attribute chains on the modules: `trt.X.Y`, `cudart.X.Y` (also `self._trt`, `x._cudart`,
  `import_tensorrt().X`, `import_cudart().X`);
- members of TensorRT objects held in variables annotated with a TensorRT class
  (`builder: trt.Builder = ...`, `def f(parser: trt.OnnxParser)`): the convention the runtime follows;
- keyword arguments of calls on those (checked against the pybind11 signatures).

The collector is tested on a snippet and must find known names in the runtime, so it cannot silently
collect nothing. The TensorRT / cudart test double (tensorrt_double.py) is held to the same names.

Fetch the wheels with .ci/fetch_runtime_wheels.sh; without them these tests skip.
"""

from __future__ import annotations

import ast
import enum
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import s4s_export.runtime
from s4s_export.cachedir import cache_root

RUNTIME = Path(s4s_export.runtime.__file__).parent
CACHE = cache_root()
MODULES = {"trt": ("trt", "_trt", "import_tensorrt"), "cudart": ("cudart", "_cudart", "import_cudart")}
STUB_SYMBOLS = ["createInferBuilder_INTERNAL", "createInferRuntime_INTERNAL", "createInferRefitter_INTERNAL",
                "createNvOnnxParser_INTERNAL", "createNvOnnxParserRefitter_INTERNAL", "getNvOnnxParserVersion",
                "getPluginRegistry", "getBuilderPluginRegistry", "initLibNvInferPlugins"]


def _module_of(node: ast.AST) -> str | None:
    """`trt` / `cudart` when `node` denotes that module in our code's conventions."""
    for module, (name, attr, importer) in MODULES.items():
        if isinstance(node, ast.Name) and node.id == name or isinstance(node, ast.Attribute) and node.attr == attr \
                or isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == importer:
            return module
    return None


def _trt_class(annotation: ast.AST | None) -> str | None:
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    if (isinstance(annotation, ast.Attribute) and isinstance(annotation.value, ast.Name)
            and annotation.value.id == "trt"):
        return annotation.attr
    return None


MODULE_ATTRS = {attr for _, attr, _ in MODULES.values()}


def _chain(node: ast.Attribute) -> tuple[ast.AST, list[str]]:
    """The base and attribute names of `a.b.c`; the base stops at a `_trt` / `_cudart` attribute (`self._trt.X`)."""
    names = []
    while isinstance(node, ast.Attribute) and node.attr not in MODULE_ATTRS:
        names.insert(0, node.attr)
        node = node.value
    return node, names


def collect_usage(sources: list[tuple[str, str]] | None = None) -> dict:
    """{"trt": [[...chain]], "cudart": [...], "members": [[class, member]], "kwargs": [[class, method, [kw]]]}.

    sources: (filename, code) pairs; default every runtime/*.py.
    """
    if sources is None:
        sources = [(str(path), path.read_text()) for path in sorted(RUNTIME.glob("*.py"))]
    chains = {"trt": set(), "cudart": set()}
    members, kwargs = set(), set()
    for filename, code in sources:
        tree = ast.parse(code, filename=filename)
        for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            typed = {a.arg: _trt_class(a.annotation) for a in function.args.args + function.args.kwonlyargs}
            typed.update({n.target.id: _trt_class(n.annotation) for n in ast.walk(function)
                          if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)})
            typed = {k: v for k, v in typed.items() if v}
            for node in ast.walk(function):
                if isinstance(node, ast.Attribute):
                    base, names = _chain(node)
                    module = _module_of(base)
                    if module and names:
                        chains[module].add(tuple(names))
                    if isinstance(node.value, ast.Name) and node.value.id in typed:
                        members.add((typed[node.value.id], node.attr))
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.keywords:
                    owner = node.func.value
                    if isinstance(owner, ast.Name) and owner.id in typed:
                        kwargs.add((typed[owner.id], node.func.attr, tuple(k.arg for k in node.keywords)))
    return {"trt": sorted(chains["trt"]), "cudart": sorted(chains["cudart"]), "members": sorted(members),
            "kwargs": sorted(kwargs)}


CHECK = textwrap.dedent("""
    import json, re, sys
    usage = json.loads(sys.argv[2])
    if sys.argv[1] == "trt":
        import tensorrt_bindings as module
    else:
        from cuda.bindings import runtime as module

    def resolve(obj, names):
        for name in names:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True

    missing = [".".join(c) for c in usage[sys.argv[1]] if not resolve(module, c)]
    if sys.argv[1] == "trt":
        missing += [f"{c}.{m}" for c, m in usage["members"] if not resolve(module, [c, m])]
        for c, m, kws in usage["kwargs"]:
            doc = getattr(getattr(module, c, None), m, None).__doc__ or ""
            signatures = [line for line in doc.splitlines() if line.lstrip("0123456789. ").startswith(m + "(")]
            params = set(re.findall(r"(\\w+):", " ".join(signatures)))
            missing += [f"{c}.{m}(keyword {k})" for k in kws if k not in params]
    print(json.dumps({"version": getattr(module, "__version__", ""), "missing": missing}))
""")


SNIPPET = textwrap.dedent("""
    def f(self, runner, builder: trt.Builder, n):
        trt = import_tensorrt()
        trt.BuilderFlag.TF32
        self._trt.TensorIOMode.INPUT
        self._cudart.cudaStreamDestroy(s)
        runner._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.runner._cudart.cudaGraphLaunch(g, s)
        import_cudart().cudaGetDeviceCount()
        config: trt.IBuilderConfig = builder.create_builder_config()
        config.set_timing_cache(cache, ignore_mismatch=False)
        self._private.attribute
        n.shape
""")


def test_collector_finds_every_form():
    found = collect_usage([("snippet.py", SNIPPET)])
    assert found["trt"] == [("Builder",), ("BuilderFlag",), ("BuilderFlag", "TF32"), ("IBuilderConfig",),
                            ("TensorIOMode",), ("TensorIOMode", "INPUT")]
    assert found["cudart"] == [("cudaGetDeviceCount",), ("cudaGraphLaunch",), ("cudaMemcpyKind",),
                               ("cudaMemcpyKind", "cudaMemcpyHostToDevice"), ("cudaStreamDestroy",)]
    assert found["members"] == [("Builder", "create_builder_config"), ("IBuilderConfig", "set_timing_cache")]
    assert found["kwargs"] == [("IBuilderConfig", "set_timing_cache", ("ignore_mismatch",))]


@pytest.fixture(scope="module")
def usage() -> dict:
    found = collect_usage()
    classes = {c for c, _ in found["members"]}
    assert {"Builder", "IBuilderConfig", "INetworkDefinition", "OnnxParser", "IOptimizationProfile", "ITensor",
            "ICudaEngine", "IExecutionContext", "Runtime", "ParserError", "Logger"} <= classes, classes
    assert ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED") in found["trt"]
    assert {("cudaMemcpyAsync",), ("cudaStreamDestroy",), ("cudaGraphExecDestroy",)} <= set(found["cudart"]), \
        "names reached through self._cudart / runner._cudart must be collected"
    assert ("ICudaEngine", "get_tensor_profile_shape") in found["members"]
    assert ("Logger", "min_severity") in found["members"]
    return found


def _fetched(*parts: str) -> Path:
    path = CACHE.joinpath(*parts)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    if any(tag not in w.read_text() and "py3-none" not in w.read_text() for w in path.glob("*.dist-info/WHEEL")):
        pytest.skip(f"{path} holds wheels for another Python than {tag}: rerun .ci/fetch_runtime_wheels.sh with it")
    if not (path / ".complete").is_file():
        pytest.skip(f"{path} not fetched: run .ci/fetch_runtime_wheels.sh (PyPI)")
    return path


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> Path:
    """libnvinfer / libnvonnxparser / libnvinfer_plugin .so.10 and .so.11 exporting the bindings' 9 symbols."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stub TensorRT libraries")
    d = tmp_path_factory.mktemp("trt-stubs")
    (d / "stub.c").write_text("".join(f"void *{s}(void) {{ return 0; }}\n" for s in STUB_SYMBOLS))
    for major in (10, 11):
        for lib in ("nvinfer", "nvonnxparser", "nvinfer_plugin"):
            name = f"lib{lib}.so.{major}"
            subprocess.run([compiler, "-shared", "-fPIC", "-o", d / name, f"-Wl,-soname,{name}", d / "stub.c"],
                           check=True)
    return d


def _run(which: str, usage: dict, path: Path, stubs: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(path)}
    if stubs is not None:
        env["LD_LIBRARY_PATH"] = str(stubs)
    result = subprocess.run([sys.executable, "-c", CHECK, which, json.dumps(usage)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("major", ["10", "11"])
def test_tensorrt_names_exist(usage, stubs, major):
    report = _run("trt", usage, _fetched("trt-bindings", major), stubs)
    assert report["version"].startswith(major + ".")
    assert report["missing"] == [], f"TensorRT {report['version']} lacks {report['missing']}"


def test_cuda_runtime_names_exist(usage):
    report = _run("cudart", usage, _fetched("cuda-bindings"))
    assert report["missing"] == [], f"cuda-bindings lacks {report['missing']}"


def test_the_check_catches_a_removed_name(usage, stubs):
    """BuilderFlag.FP16 was removed in 11: the same check must report it there and not in 10."""
    probe = {**usage, "trt": [["BuilderFlag", "FP16"]], "members": [["IBuilderConfig", "int8_calibrator"]],
             "kwargs": [["IBuilderConfig", "set_timing_cache", ["ignore_mismatch", "not_a_parameter"]]]}
    ten = _run("trt", probe, _fetched("trt-bindings", "10"), stubs)["missing"]
    eleven = _run("trt", probe, _fetched("trt-bindings", "11"), stubs)["missing"]
    assert ten == ["IBuilderConfig.set_timing_cache(keyword not_a_parameter)"]
    assert eleven == ["BuilderFlag.FP16", "IBuilderConfig.int8_calibrator",
                      "IBuilderConfig.set_timing_cache(keyword not_a_parameter)"]


def double_usage() -> dict:
    """Every public name of the TensorRT / cudart test double, as chains for the same check."""
    from tensorrt_double import TensorRTDouble

    double, chains = TensorRTDouble(), {"trt": [], "cudart": []}
    for which, module in (("trt", double.trt), ("cudart", double.cudart)):
        for name, value in vars(module).items():
            if name.startswith("_"):
                continue
            chains[which].append([name])
            if isinstance(value, type):
                members = value.__members__ if issubclass(value, enum.Enum) else \
                    {n for klass in value.__mro__[:-1] if klass.__module__ == "tensorrt_double" or klass is value
                     for n in vars(klass)}
                chains[which] += [[name, m] for m in members if not m.startswith("_")]
    return {**chains, "members": [], "kwargs": []}


@pytest.mark.parametrize("major", ["10", "11"])
def test_the_test_double_uses_real_tensorrt_names(stubs, major):
    report = _run("trt", double_usage(), _fetched("trt-bindings", major), stubs)
    assert report["missing"] == [], f"the test double has names TensorRT {report['version']} lacks: {report['missing']}"


def test_the_test_double_uses_real_cuda_runtime_names():
    report = _run("cudart", double_usage(), _fetched("cuda-bindings"))
    assert report["missing"] == [], f"the test double has names cuda-bindings lacks: {report['missing']}"
