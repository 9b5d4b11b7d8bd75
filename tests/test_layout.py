"""The package layout (issue 15): no import cycle inside steerdiff, ``steerdiff.core`` imports only
itself and third-party packages, the library imports the new paths, and every old import path is the
new module (or, where the old module name is now a package, re-exports the same objects).

The import graph is read with ``ast`` from every import statement in a file, module-level,
function-local and ``if TYPE_CHECKING:`` ones alike; the implicit import of parent packages is not
an edge. Written by tools/restructure.py.
"""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import steerdiff

PKG = Path(steerdiff.__file__).parent
SHIM_MARK = "# steerdiff-shim: old import path"
# old top-level module -> its home under steerdiff
MOVES = {
    "errors": "core.errors",
    "denoisers": "core.denoisers",
    "sampling": "core.sampling",
    "schedules_ddpm": "core.schedules_ddpm",
    "guidance": "core.guidance",
    "api": "core.api",
    "seeding": "core.seeding",
    "distributed": "core.distributed",
    "toy": "core.toy",
    "particles": "particles.pg",
    "kernels": "particles.kernels",
    "embeddings": "particles.embeddings",
    "stratified": "particles.stratified",
    "diversity": "particles.diversity",
    "fixed_condition": "particles.fixed_condition",
    "compose": "compose.sculpt",
    "joint": "compose.joint",
    "compose_eval": "compose.evaluate",
    "sequences": "sequences.moving",
    "edit": "edit.hspace",
    "edit_eval": "edit.evaluate",
    "pipelines": "pipelines.stable_diffusion",
    "training": "train.training",
    "nets": "train.nets",
    "classifier": "train.classifier",
    "metrics": "evaluation.metrics",
    "features": "evaluation.features",
    "evaluate": "evaluation.evaluate",
    "report": "evaluation.report",
    "quality": "evaluation.quality",
}
# old modules whose name is now a package name: the package re-exports them
COLLIDE = (
    "compose",
    "edit",
    "particles",
    "pipelines",
    "sequences",
)


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package except the old-path shims."""
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if SHIM_MARK not in f.read_text():
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[int, str]]:
    """``(line, absolute target)`` of every steerdiff import in a module; ``from a import b`` names
    ``a.b`` when that is a module of its own."""
    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "steerdiff"]
        elif isinstance(node, ast.ImportFrom):
            base = (
                ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
                if node.level
                else node.module
            )
            if base.split(".")[0] != "steerdiff":
                continue
            for a in node.names:
                out.append((node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base))
    return out


GRAPH = {
    name: sorted({t for _, t in _imports(name, path) if t in MODULES and t != name}) for name, path in MODULES.items()
}


def test_the_library_imports_new_paths_only():
    old = {f"steerdiff.{m}" for m in MOVES if m not in COLLIDE}
    bad = [
        f"{MODULES[n].relative_to(PKG.parent)}:{line} imports {t}"
        for n, p in MODULES.items()
        for line, t in _imports(n, p)
        if t in old or (t == "steerdiff" and n != "steerdiff")
    ]
    assert not bad, "\n".join(bad)


def test_import_graph_has_no_cycle():
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in GRAPH[n]:
            if state.get(m) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m) :] + [m]))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in GRAPH:
        if n not in state:
            visit(n)


def test_packages_are_layered():
    """The graph of packages (``core``, ``particles``, ...; a top-level module is its own node) has no cycle."""

    def node(n):
        return n.split(".")[1] if n.count(".") else n

    graph = {}
    for n, targets in GRAPH.items():
        if n != "steerdiff":
            graph.setdefault(node(n), set()).update(node(t) for t in targets if node(t) != node(n))
    done = set()
    while len(done) < len(graph):  # peel off packages that import only peeled ones
        free = [p for p in graph if p not in done and graph[p] <= done]
        assert free, f"package cycle among {sorted(set(graph) - done)}: " + "; ".join(
            f"{p} -> {sorted(graph[p] - done)}" for p in sorted(set(graph) - done)
        )
        done.update(free)


def test_core_imports_only_core_and_third_party():
    core = [n for n in MODULES if n == "steerdiff.core" or n.startswith("steerdiff.core.")]
    assert len(core) > 5
    bad = [
        f"{MODULES[n].relative_to(PKG.parent)}:{line} imports {t}"
        for n in core
        for line, t in _imports(n, MODULES[n])
        if not (t == "steerdiff.core" or t.startswith("steerdiff.core."))
    ]
    assert not bad, "\n".join(bad)


def _defined(module) -> list[str]:
    names = []
    for node in ast.parse(Path(module.__file__).read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names += [
                    e.id
                    for e in ([t] if isinstance(t, ast.Name) else t.elts if isinstance(t, ast.Tuple) else [])
                    if isinstance(e, ast.Name)
                ]
    return [n for n in names if not (n.startswith("__") and n.endswith("__"))]


@pytest.mark.parametrize("old", sorted(MOVES))
def test_old_import_path_is_the_new_module(old):
    was, now = importlib.import_module(f"steerdiff.{old}"), importlib.import_module(f"steerdiff.{MOVES[old]}")
    if old in COLLIDE:  # the package re-exports every name the old module defined
        assert was.__name__ == f"steerdiff.{old}" and was is not now
        missing = [n for n in _defined(now) if getattr(was, n, None) is not getattr(now, n)]
        assert not missing, f"steerdiff.{old} lacks (or has other objects for) {missing}"
    else:
        assert was is now
        assert getattr(steerdiff, old) is now


def test_old_modules_are_attributes_in_a_fresh_interpreter():
    code = (
        "import steerdiff as sd, importlib\n"
        f"for old, new in {MOVES!r}.items():\n"
        "    now = importlib.import_module('steerdiff.' + new)\n"
        "    was = getattr(sd, old)\n"
        f"    assert was is now or old in {COLLIDE!r}, old\n"
    )  # sd.compose is the function compose
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PKG.parent)


def test_public_names_resolve():
    for name in steerdiff.__all__:
        assert getattr(steerdiff, name) is not None
    assert steerdiff.sampling is importlib.import_module("steerdiff.core.sampling")
