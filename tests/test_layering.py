"""The package's layers point down: torch-free base <- runtime/ <- core <- learn/, export/ <- commands/.

- importing `s4s_export.runtime` (and every runtime module) loads no torch and no s4s_export module outside
  the base and the runtime (a fresh interpreter, so nothing else is loaded already);
- statically, over every import statement in the package, module-level and inside functions alike (a lazy
  import is still a dependency; only `if TYPE_CHECKING:` blocks, which never run, are left out): base modules
  import only base modules, runtime modules only base and runtime modules, and no import cycles exist.

BASE_MODULES is the one list of the base layer (docs/architecture.md describes it).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"s4s_export": ROOT / "s4s_export", "s4s_export.learn": ROOT / "learn",
                "s4s_export.runtime": ROOT / "runtime"}  # pyproject.toml package-dir
BASE_MODULES = ("s4s_export", "s4s_export.errors", "s4s_export.fileio", "s4s_export.hashing", "s4s_export.cachedir",
                "s4s_export.contract", "s4s_export.noise", "s4s_export.paths", "s4s_export.limits",
                "s4s_export.outputs")
RUNTIME = "s4s_export.runtime"


def in_runtime(module: str) -> bool:
    return module == RUNTIME or module.startswith(RUNTIME + ".")


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__.py)."""
    out = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if any(p in ("cpp", "__pycache__") for p in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    nested = {name: path for name, path in out.items() if name.startswith(("s4s_export.learn", "s4s_export.runtime"))
              and path.is_relative_to(PACKAGE_DIRS["s4s_export"])}
    assert not nested, f"learn/ and runtime/ live at the top level, not in s4s_export/: {sorted(nested)}"
    return out


def _type_checking_block(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or \
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.AST):
    """Import nodes anywhere in the tree except under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        for child in ast.iter_child_nodes(node):
            if not (isinstance(node, ast.If) and _type_checking_block(node) and child in node.body):
                stack.append(child)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (relative imports resolved; `from pkg import name` counts
    pkg.name when that is a module, else pkg)."""
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        deps = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = here[: len(here) - node.level + 1] if node.level else []
                source = ".".join([*base, *([node.module] if node.module else [])])
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a package module: its nearest module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> ... -> a) per strongly connected component of more than one module (Tarjan)."""
    index, low, on_stack, stack, sccs = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(sorted(scc))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, scc) for scc in sccs]


def _cycle_in(graph: dict[str, set[str]], scc: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component (breadth-first)."""
    members, start = set(scc), scc[0]
    previous, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {scc}")


GRAPH = import_graph(module_files())


def test_the_graph_builder_sees_known_imports():
    """The collector resolves relative, package-level and function-level imports (it must not find nothing)."""
    assert "s4s_export.errors" in GRAPH["s4s_export.runtime.sampler"]
    assert "s4s_export.runtime.onnxruntime_runner" in GRAPH["s4s_export.runtime.sampler"]  # inside a method
    assert "s4s_export.runtime" in GRAPH["s4s_export.export.verify"]
    assert "s4s_export.runtime.tensorrt_build" in GRAPH["s4s_export.commands.build"]
    assert "s4s_export.learn" not in GRAPH["s4s_export.runtime.tensorrt_build"]
    cyclic = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(cyclic) == [["a", "b", "c", "a"]] and find_cycles({"a": {"b"}, "b": set()}) == []


def test_base_modules_import_only_base_modules():
    for module in BASE_MODULES:
        assert module in GRAPH, f"{module} is listed as base but does not exist"
        outside = sorted(d for d in GRAPH[module] if d not in BASE_MODULES)
        assert not outside, f"base module {module} imports {outside}, above the base layer"


def test_runtime_imports_only_base_and_runtime():
    for module, deps in sorted(GRAPH.items()):
        if in_runtime(module):
            outside = sorted(d for d in deps if d not in BASE_MODULES and not in_runtime(d))
            assert not outside, f"{module} imports {outside}: runtime/ may import only itself and {BASE_MODULES}"


LAYERS = ("base", "runtime", "core", "learn and export", "commands")


def layer(module: str) -> int:
    """Index in LAYERS: the CLI entry points (cli, __main__) belong with commands/."""
    if module in BASE_MODULES:
        return 0
    if in_runtime(module):
        return 1
    if module.startswith(("s4s_export.learn", "s4s_export.export", "s4s_export.bench")):
        return 3  # bench times the eager loop against exported graphs: it sits beside export
    if module.startswith("s4s_export.commands") or module in ("s4s_export.cli", "s4s_export.__main__"):
        return 4
    return 2


def test_every_import_points_down_or_sideways():
    upward = sorted(f"{m} ({LAYERS[layer(m)]}) imports {d} ({LAYERS[layer(d)]})"
                    for m, deps in GRAPH.items() for d in deps if layer(d) > layer(m))
    assert not upward, "imports pointing up:\n" + "\n".join(upward)


def test_no_import_cycles():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


SCRIPT = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    import s4s_export.runtime as rt
    for module in pkgutil.iter_modules(rt.__path__):
        importlib.import_module(f"s4s_export.runtime.{module.name}")
    print(json.dumps(sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "s4s_export")))))
""")


def test_importing_the_runtime_loads_only_base_and_runtime_modules():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert not [m for m in loaded if m == "torch" or m.startswith("torch.")], loaded
    outside = [m for m in loaded if m not in BASE_MODULES and not in_runtime(m)]
    assert not outside, f"importing s4s_export.runtime loaded {outside}, outside the base and runtime layers"
    assert "s4s_export.runtime.onnxruntime_runner" in loaded and "s4s_export.contract" in loaded
