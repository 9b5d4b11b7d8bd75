#!/usr/bin/env python3
"""Restructure src/steerdiff into packages by idea over a layered core (issue 15, part 1).

Run from anywhere:  python tools/restructure.py [--dry-run] [--root REPO]

What it does, in order, all computed in memory first (every pattern is checked before a file is
touched, so a tree that diverged from the patterns makes it stop with a message and no change):

1. checks that every top-level module of src/steerdiff is in ``MOVES`` or ``STAYS`` (a new module
   stops the run: add a line to the table);
2. applies the small code patches in ``patch_*`` (import cycles: the PC sampler's default repulsion,
   the shipped-model registry ``steerdiff.hub``, ``classify`` moved from quality to classifier),
   each asserting that its pattern was found;
3. ``git mv``s each module to its new home (a plain rename for untracked files) and rewrites every
   import inside src/steerdiff (relative ``from .x import y``, ``from . import x``, absolute
   ``steerdiff.x``, module-level and function-local) to the new location;
4. leaves at each old path a shim whose module object *is* the new module
   (``sys.modules[__name__] = ...``), so ``steerdiff.sampling is steerdiff.core.sampling``; where the
   old module name is now a package name (``particles``, ``compose``, ...), the package's
   ``__init__`` re-exports every name the old module defined (private ones included); moved module
   names stay attributes of ``steerdiff`` (``sd.toy``) through a module ``__getattr__``;
5. writes ``steerdiff/hub.py`` and ``tests/test_layout.py`` (no import cycle between modules or
   packages, ``core`` imports only itself, the library uses new paths, old paths resolve);
6. points ``src/steerdiff/<old>.py`` paths in pyproject.toml (mypy's file list) at the new files, and
   when ruff is installed sorts the rewritten import blocks (I001) and formats the files it created.

tests/, benchmarks/ and examples/ keep the old import paths, which proves the shims; only a string
that names a module which is now a package (``"steerdiff.particles"`` for monkeypatch or
import_module, as in test_mutants.py) is pointed at the real module, so patches hit the code that
runs. Running it again on a restructured tree (``src/steerdiff/core`` exists) does nothing.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# The table: old top-level module -> new dotted path under steerdiff. A module missing from the
# tree is skipped (cfg / diversity / fixed_condition / edit_eval are being written now).
MOVES = {
    # core: the protocol and what every idea uses; imports nothing above it
    "errors": "core.errors",
    "denoisers": "core.denoisers",
    "sampling": "core.sampling",
    "schedules_ddpm": "core.schedules_ddpm",
    "guidance": "core.guidance",
    "api": "core.api",
    "seeding": "core.seeding",
    "distributed": "core.distributed",
    "toy": "core.toy",
    # particles: PG, repulsion, kernels, embeddings, stratified / prior-keeping batches, fixed-prompt diversity
    "particles": "particles.pg",
    "kernels": "particles.kernels",
    "embeddings": "particles.embeddings",
    "stratified": "particles.stratified",
    "cfg": "particles.cfg",
    "diversity": "particles.diversity",
    "fixed_condition": "particles.fixed_condition",
    # compose: sculpting, mixtures, AND/NOT, joint classifiers and their evaluation
    "compose": "compose.sculpt",
    "joint": "compose.joint",
    "compose_eval": "compose.evaluate",
    # one package per remaining idea
    "sequences": "sequences.moving",
    "edit": "edit.hspace",
    "edit_eval": "edit.evaluate",
    "pipelines": "pipelines.stable_diffusion",
    # training: networks, denoiser training, classifier training
    "training": "train.training",
    "nets": "train.nets",
    "classifier": "train.classifier",
    # evaluation
    "metrics": "evaluation.metrics",
    "features": "evaluation.features",
    "evaluate": "evaluation.evaluate",
    "report": "evaluation.report",
    "quality": "evaluation.quality",
}
# shared by several ideas, or the entry points: stay where they are
STAYS = {"__init__", "__main__", "cli", "models", "data", "io", "checkpoint", "hub"}

PACKAGE_DOCS = {
    "core": "The protocol and what every idea uses: denoisers, samplers and schedules, ``guided`` and the\n"
    "guidance-term protocol, ``sample``, per-sample seeding, distributed collectives, analytic toys.\n"
    "It imports nothing else from steerdiff (tests/test_layout.py checks it).",
    "particles": "Particle methods: Particle Guidance and repulsion, kernels, embeddings, stratified and\n"
    "prior-keeping batches, and the fixed-prompt diversity methods.",
    "compose": "Composition: mixtures, compositional sculpting, AND/NOT, joint classifiers and their evaluation.",
    "sequences": "Frame-conditional models: moving-digit sequences and the metrics of predicted frames.",
    "edit": "Semantic editing in h-space.",
    "pipelines": "diffusers pipelines (Stable Diffusion) as steerdiff denoisers.",
    "train": "Training: network builders, denoiser training, classifier training.",
    "evaluation": "Evaluation: metrics, feature networks, ``evaluate``, ``report`` and the MNIST quality report.",
}

SHIM_MARK = "# steerdiff-shim: old import path"
HUB_NAMES = {"models": "MODELS", "classifier": "CLASSIFIERS", "joint": "JOINT_CLASSIFIERS", "edit": "EDITS"}


class Refuse(SystemExit):
    def __init__(self, msg: str):
        super().__init__(f"restructure: {msg}")


def must_sub(pattern: str, repl: str, text: str, what: str, count: int | None = 1, flags=re.M) -> str:
    """``re.subn`` that stops the run unless the pattern was found (``count`` times when given)."""
    new, n = re.subn(pattern, repl, text, flags=flags)
    if n == 0 or (count is not None and n != count):
        raise Refuse(
            f"patch {what!r}: pattern {pattern!r} found {n} times (expected {count or '>= 1'}); "
            "the tree diverged: adapt the patch in tools/restructure.py"
        )
    return new


# ---------------------------------------------------------------------------------------------
# code patches, written against the OLD layout (relative imports like ``.hub`` are rewritten after)


def patch_sampling(src: dict[str, str]) -> None:
    """sample_pc's 'repulsive' plan steps built a particles.Repulsion (core -> particles): the default
    term is now a factory the particles package registers, DEFAULT_CORRECTOR_TERM."""
    t = src["sampling"]
    t = must_sub(r"^[ \t]*from \.particles import Repulsion[ \t]*\n", "", t, "sampling: drop the particles import")
    t = must_sub(r"else Repulsion\(\)", "else _default_corrector_term()", t, "sampling: default term")
    t = must_sub(
        r"default :class:`Repulsion`",
        "default :class:`~steerdiff.Repulsion` through ``DEFAULT_CORRECTOR_TERM``",
        t,
        "sampling: docstring",
        count=None,
    )
    t = must_sub(
        r"^(PLAN_KINDS = .*\n)",
        r"\1"
        + textwrap.dedent("""
        # The term of a "repulsive" plan step whose entry names none: a zero-argument factory, registered
        # by steerdiff.particles (Repulsion) when it is imported, since core imports nothing above it.
        DEFAULT_CORRECTOR_TERM: Callable[[], Any] | None = None


        def _default_corrector_term() -> Any:
            factory = DEFAULT_CORRECTOR_TERM
            if factory is None:
                raise SteerdiffError("a repulsive corrector step needs a guidance term: give its plan entry a 'term' "
                                     "(e.g. steerdiff.Repulsion()) or import steerdiff.particles")
            return factory()
        """).replace("\\", "\\\\"),
        t,
        "sampling: DEFAULT_CORRECTOR_TERM",
    )
    if not re.search(r"^from collections\.abc import .*\bCallable\b", t, re.M):
        t = must_sub(r"^(import math\n)", r"\1from collections.abc import Callable\n", t, "sampling: import Callable")
    if not re.search(r"^from typing import .*\bAny\b", t, re.M):
        t = must_sub(r"^(import math\n)", r"\1from typing import Any\n", t, "sampling: import Any")
    if not re.search(r"^from \.errors import .*\bSteerdiffError\b", t, re.M):
        raise Refuse("patch sampling: sampling.py no longer imports SteerdiffError from .errors; adapt patch_sampling")
    src["sampling"] = t
    p = src["particles"]
    if not re.search(r"^class Repulsion\b", p, re.M):
        raise Refuse("patch sampling: particles.py defines no class Repulsion; adapt patch_sampling")
    if "DEFAULT_CORRECTOR_TERM" not in p:
        p = (
            p.rstrip("\n")
            + "\n"
            + textwrap.dedent("""

            # sample_pc's "repulsive" corrector steps use Repulsion when their plan entry names no term
            from . import sampling as _sampling  # noqa: E402  (core cannot import particles)

            _sampling.DEFAULT_CORRECTOR_TERM = Repulsion
            """)
        )
    src["particles"] = p


def patch_classify(src: dict[str, str]) -> None:
    """compose_eval imported ``classify`` from quality, and quality (the per-model quality table) imports
    compose_eval: ``classify`` (a classifier applied in batches) moves to classifier.py; quality and every
    ``from .quality import classify`` import it from there (``steerdiff.quality.classify`` still works)."""
    q = src["quality"]
    node = next((n for n in ast.parse(q).body if isinstance(n, ast.FunctionDef) and n.name == "classify"), None)
    if node is None:
        raise Refuse("patch classify: quality.py defines no top-level classify(); adapt patch_classify")
    lines = q.splitlines(keepends=True)
    start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    block = "".join(lines[start : node.end_lineno])
    local = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
    local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    free = (
        {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        - local
        - set(dir(builtins))
    )
    c = src["classifier"]
    missing = free - imported_names(c) - set(defined_names(c))
    if missing:
        raise Refuse(
            f"patch classify: classify() uses {sorted(missing)}, which classifier.py lacks; adapt patch_classify"
        )
    src["classifier"] = c.rstrip("\n") + "\n\n\n" + block.rstrip("\n") + "\n"
    q = re.sub(r"\n{4,}", "\n\n\n", "".join(lines[:start] + lines[node.end_lineno :]))
    src["quality"] = _insert_after_imports(q, "from .classifier import classify", start + 1)
    for mod, text in src.items():
        if mod != "quality":
            src[mod] = re.sub(
                r"^([ \t]*)from \.quality import classify[ \t]*$",
                r"\1from .classifier import classify",
                text,
                flags=re.M,
            )


def _top_assign(tree: ast.Module, name: str) -> ast.Assign | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
    return None


def _insert_after_imports(text: str, line: str, before_line: int) -> str:
    """``line`` after the last top-level import that ends before line ``before_line`` (1-based)."""
    tree = ast.parse(text)
    last = max(
        (n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) and n.end_lineno < before_line),
        default=None,
    )
    if last is None:
        raise Refuse(f"no top-level import to put {line!r} after")
    lines = text.splitlines(keepends=True)
    lines.insert(last, line + "\n")
    return "".join(lines)


def drop_unused_import(text: str, name: str) -> str:
    """``text`` without ``name`` in its top-level single-line from-import when nothing else uses it."""
    tree = ast.parse(text)
    if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(tree)):
        return text
    lines = text.splitlines(keepends=True)
    for node in tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.lineno == node.end_lineno
            and any(a.name == name and not a.asname for a in node.names)
        ):
            keep = [a for a in node.names if a.name != name]
            i = node.lineno - 1
            lines[i] = (
                ""
                if not keep
                else re.sub(
                    r"import .*$",
                    "import " + ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in keep),
                    lines[i].rstrip("\n"),
                )
                + "\n"
            )
    return "".join(lines)


def patch_hub(src: dict[str, str]) -> str:
    """The four SHIPPED dicts move into steerdiff.hub (MODELS, CLASSIFIERS, JOINT_CLASSIFIERS, EDITS) with
    weights_dir(); each module imports its dict back as SHIPPED. Breaks classifier <-> models."""
    parts, imports = [], {}
    for mod, new_name in HUB_NAMES.items():
        text = src[mod]
        tree = ast.parse(text)
        node = _top_assign(tree, "SHIPPED")
        if node is None:
            raise Refuse(f"patch hub: {mod}.py has no top-level SHIPPED = ...; adapt patch_hub")
        lines = text.splitlines(keepends=True)
        start = node.lineno - 1
        while start > 0 and lines[start - 1].lstrip().startswith("#"):
            start -= 1
        block = lines[start : node.end_lineno]
        # names the dict needs: taken from the module's own top-level imports
        bound = {
            t.id
            for c in ast.walk(node)
            if isinstance(c, ast.comprehension)
            for t in ast.walk(c.target)
            if isinstance(t, ast.Name)
        }
        free = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound
        free -= set(dir(builtins))
        for name in sorted(free):
            origin = [
                n
                for n in tree.body
                if isinstance(n, ast.ImportFrom) and any((a.asname or a.name) == name for a in n.names)
            ]
            if not origin or origin[0].level != 1:
                raise Refuse(
                    f"patch hub: {mod}.SHIPPED uses {name!r}, which {mod}.py does not import from a steerdiff module"
                )
            imports.setdefault(origin[0].module, set()).add(name)
        first = next(i for i, ln in enumerate(block) if ln.lstrip().startswith("SHIPPED"))
        delta = len(new_name) - len("SHIPPED")
        out = []
        for i, ln in enumerate(block):
            if i == first:
                ln = ln.replace("SHIPPED", new_name, 1)
            elif i > first and ln.startswith(" " * 4):
                ln = " " * max(delta, 0) + ln
            out.append(ln)
        parts.append("".join(out).rstrip("\n") + "\n")
        rest = lines[:start] + lines[node.end_lineno :]
        text = "".join(rest)
        text = re.sub(r"\n{4,}", "\n\n\n", text)
        names = f"{new_name} as SHIPPED" + (", weights_dir" if mod == "models" else "")
        text = _insert_after_imports(text, f"from .hub import {names}", start + 1)
        for name in free:  # the module's import of a name only the dict used
            text = drop_unused_import(text, name)
        src[mod] = text
    # models.weights_dir moves to hub (models re-exports it through the import above)
    src["models"] = must_sub(
        r"^def weights_dir\(\)[^\n]*\n(?:    [^\n]*\n)+\n*", "", src["models"], "models: weights_dir"
    )
    if "resources." not in src["models"]:
        src["models"] = re.sub(r"^from importlib import resources\n", "", src["models"], flags=re.M)
    for mod, text in src.items():
        if mod != "models" and "from .models import weights_dir" in text:
            src[mod] = text.replace("from .models import weights_dir", "from .hub import weights_dir")
    for mod in ("classifier", "joint", "edit"):
        if "from .models import" in src[mod]:
            raise Refuse(f"patch hub: {mod}.py still imports steerdiff.models; adapt patch_hub")
    header = (
        '"""The registry of everything steerdiff ships, by name, and the weights directory that holds it.\n\n'
        "``MODELS`` (denoisers, read by :func:`steerdiff.models.load`), ``CLASSIFIERS``\n"
        "(:func:`steerdiff.train.classifier.load_classifier`), ``JOINT_CLASSIFIERS``\n"
        "(:func:`steerdiff.compose.joint.shipped_joint_classifier`) and ``EDITS``\n"
        "(:func:`steerdiff.edit.load_edit`); each maps a name to its folder in :func:`weights_dir`.\n"
        '"""\nfrom __future__ import annotations\n\nfrom importlib import resources\nfrom pathlib import Path\n\n'
    )
    header += "".join(f"from .{m} import {', '.join(sorted(ns))}\n" for m, ns in sorted(imports.items()))
    body = (
        '\n\ndef weights_dir() -> Path:\n    """The directory of the shipped weights (``steerdiff/weights``)."""\n'
        '    return Path(str(resources.files("steerdiff") / "weights"))\n'
    )
    for part in parts:
        body += "\n\n" + part
    body += (
        '\n\ndef shipped() -> dict[str, list]:\n    """Every shipped name, by kind."""\n'
        '    return {"models": list(MODELS), "classifiers": list(CLASSIFIERS),\n'
        '            "joint_classifiers": list(JOINT_CLASSIFIERS), "edits": list(EDITS)}\n'
    )
    return header + body


# ---------------------------------------------------------------------------------------------
# import rewriting


def _rel(from_pkg: list[str], target: list[str]) -> str:
    """The relative module spec for ``target`` from a module in package ``from_pkg``."""
    c = 0
    while c < min(len(from_pkg), len(target)) and from_pkg[c] == target[c]:
        c += 1
    return "." * (len(from_pkg) - c + 1) + ".".join(target[c:])


def _new_abs(old_abs: str, moves: dict[str, str]) -> str:
    parts = old_abs.split(".")
    if len(parts) >= 2 and parts[0] == "steerdiff" and parts[1] in moves:
        return ".".join(["steerdiff", *moves[parts[1]].split("."), *parts[2:]])
    return old_abs


def rewrite_imports(text: str, new_qual: str, moves: dict[str, str], fname: str) -> str:
    """Rewrite every steerdiff import in ``text`` (written for a top-level module of ``steerdiff``) for
    a module now at ``new_qual``, keeping relative form."""
    pkg = new_qual.split(".")[:-1]
    lines = text.splitlines(keepends=True)
    nodes = sorted(
        (n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom)),
        key=lambda n: (n.lineno, n.col_offset),
        reverse=True,
    )
    for n in ast.walk(ast.parse(text)):
        if isinstance(n, ast.Import) and any(a.name == "steerdiff" or a.name.startswith("steerdiff.") for a in n.names):
            raise Refuse(
                f"{fname}:{n.lineno}: 'import steerdiff...' inside the package: rewrite it by hand as a from-import"
            )
    for n in nodes:
        if n.level == 0 and not (n.module == "steerdiff" or (n.module or "").startswith("steerdiff.")):
            continue
        if n.level > 1:
            raise Refuse(f"{fname}:{n.lineno}: a '..' import in a top-level module: is this tree already restructured?")
        old_abs = "steerdiff" + (("." + n.module) if n.module else "") if n.level == 1 else n.module
        i = n.lineno - 1
        line = lines[i]
        head = line[n.col_offset :]
        if not head.startswith("from"):
            raise Refuse(f"{fname}:{n.lineno}: cannot locate the import statement (col {n.col_offset})")
        if old_abs == "steerdiff":  # from . import a as b, c: each name may be a module
            if n.end_lineno != n.lineno:
                raise Refuse(f"{fname}:{n.lineno}: multi-line 'from . import ...': split it by hand")
            m = re.match(r"from\s+(\.|steerdiff)\s+import\s+[^;#\n]*", head)
            stmts = []
            for a in n.names:
                alias = a.asname or a.name
                if a.name in moves:
                    tgt = ("steerdiff." + moves[a.name]).split(".")
                    spec = _rel(pkg, tgt[:-1])
                    stmts.append(f"from {spec} import {tgt[-1]}" + (f" as {alias}" if alias != tgt[-1] else ""))
                else:
                    spec = _rel(pkg, ["steerdiff"])
                    stmts.append(f"from {spec} import {a.name}" + (f" as {a.asname}" if a.asname else ""))
            indent = line[: n.col_offset]
            end = m.start() + len(m.group(0).rstrip())
            lines[i] = line[: n.col_offset] + ("\n" + indent).join(stmts) + head[end:]
            continue
        new = _new_abs(old_abs, moves)
        spec = _rel(pkg, new.split("."))
        lines[i] = line[: n.col_offset] + re.sub(
            r"^from\s+[.\w]+(\s+import)", lambda mm, spec=spec: f"from {spec}{mm.group(1)}", head, count=1
        )
    return "".join(lines)


def defined_names(text: str) -> list[str]:
    """Every name a module binds at top level by def, class or assignment (private ones too)."""
    names = []
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names += [
                    e.id
                    for e in ([t] if isinstance(t, ast.Name) else t.elts if isinstance(t, ast.Tuple) else [])
                    if isinstance(e, ast.Name)
                ]
    return [n for n in dict.fromkeys(names) if not (n.startswith("__") and n.endswith("__"))]


def imported_names(text: str) -> set[str]:
    """Names a module binds at top level by import."""
    return {
        (a.asname or a.name).split(".")[0]
        for n in ast.parse(text).body
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }


def names_imported_from(root: Path, module: str) -> set[str]:
    """Names that any file of the repository imports ``from steerdiff.<module> import ...``."""
    out = set()
    for f in (f for d in ("src", "tests", "benchmarks", "examples", "docs") for f in (root / d).rglob("*.py")):
        try:
            tree = ast.parse(f.read_text())
        except (SyntaxError, UnicodeDecodeError):
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module == f"steerdiff.{module}":
                out |= {a.name for a in n.names if a.name != "*"}
    return out


def wrap_names(prefix: str, names: list[str], width: int = 110, close: str = ")") -> str:
    """``prefix`` (ending in its opening bracket) then ``names`` wrapped at ``width``, aligned, then ``close``."""
    if prefix.endswith("import "):
        prefix += "("
    out, line = [], prefix
    for i, name in enumerate(names):
        piece = name + (", " if i < len(names) - 1 else close)
        if len(line) + len(piece) > width:
            out.append(line.rstrip())
            line = " " * len(prefix)
        line += piece
    out.append(line)
    return "\n".join(out) + "\n"


OLD_ATTRS = """

# Modules that moved (steerdiff.toy is steerdiff.core.toy, ...) stay attributes of the package:
# ``sd.toy`` imports the old path on first use, like ``import steerdiff.toy`` would.
_MOVED_MODULES = {{
{names}}}


def __getattr__(name: str):
    if name in _MOVED_MODULES:
        from importlib import import_module

        return import_module(f"{{__name__}}.{{name}}")
    raise AttributeError(f"module {{__name__!r}} has no attribute {{name!r}}")
"""

SHIM = '''"""Old import path: ``steerdiff.{old}`` is ``steerdiff.{new}`` (this module object is replaced by it)."""
{mark}
import sys

from steerdiff.{parent} import {leaf} as _module

sys.modules[__name__] = _module
'''


TEST_TEMPLATE = r'''"""The package layout (issue 15): no import cycle inside steerdiff, ``steerdiff.core`` imports only
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
MOVES = {}  # filled in by tools/restructure.py
# old modules whose name is now a package name: the package re-exports them
COLLIDE = ()  # filled in by tools/restructure.py


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
            base = ".".join(pkg[:len(pkg) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module
            if base.split(".")[0] != "steerdiff":
                continue
            for a in node.names:
                out.append((node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base))
    return out


GRAPH = {name: sorted({t for _, t in _imports(name, path) if t in MODULES and t != name}) for name, path in MODULES.items()}


def test_the_library_imports_new_paths_only():
    old = {f"steerdiff.{m}" for m in MOVES if m not in COLLIDE}
    bad = [f"{MODULES[n].relative_to(PKG.parent)}:{line} imports {t}" for n, p in MODULES.items() for line, t in _imports(n, p)
           if t in old or (t == "steerdiff" and n != "steerdiff")]
    assert not bad, "\n".join(bad)


def test_import_graph_has_no_cycle():
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in GRAPH[n]:
            if state.get(m) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
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
            f"{p} -> {sorted(graph[p] - done)}" for p in sorted(set(graph) - done))
        done.update(free)


def test_core_imports_only_core_and_third_party():
    core = [n for n in MODULES if n == "steerdiff.core" or n.startswith("steerdiff.core.")]
    assert len(core) > 5
    bad = [f"{MODULES[n].relative_to(PKG.parent)}:{line} imports {t}" for n in core for line, t in _imports(n, MODULES[n])
           if not (t == "steerdiff.core" or t.startswith("steerdiff.core."))]
    assert not bad, "\n".join(bad)


def _defined(module) -> list[str]:
    names = []
    for node in ast.parse(Path(module.__file__).read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names += [e.id for e in ([t] if isinstance(t, ast.Name) else t.elts if isinstance(t, ast.Tuple) else [])
                          if isinstance(e, ast.Name)]
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
    code = ("import steerdiff as sd, importlib\n"
            f"for old, new in {MOVES!r}.items():\n"
            "    now = importlib.import_module('steerdiff.' + new)\n"
            "    was = getattr(sd, old)\n"
            f"    assert was is now or old in {COLLIDE!r}, old\n")  # sd.compose is the function compose
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PKG.parent)


def test_public_names_resolve():
    for name in steerdiff.__all__:
        assert getattr(steerdiff, name) is not None
    assert steerdiff.sampling is importlib.import_module("steerdiff.core.sampling")
'''


# ---------------------------------------------------------------------------------------------


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=check)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="repository root")
    ap.add_argument("--dry-run", action="store_true", help="check every pattern and print the plan; change nothing")
    a = ap.parse_args(argv)
    root = a.root.resolve()
    pkg_dir = root / "src" / "steerdiff"
    if (pkg_dir / "core").is_dir():
        print(f"restructure: {pkg_dir}/core exists: the tree is already restructured; nothing to do")
        return 0
    present = {p.stem for p in pkg_dir.glob("*.py")}
    unknown = sorted(present - set(MOVES) - STAYS)
    if unknown:
        for m in unknown:
            print(
                f"ERROR: src/steerdiff/{m}.py is not in the table: add it to MOVES (new home) or STAYS in "
                f"tools/restructure.py",
                file=sys.stderr,
            )
        return 1
    if "hub" in present:
        raise Refuse("src/steerdiff/hub.py exists already: merge it with patch_hub by hand")
    moves = {old: new for old, new in MOVES.items() if old in present}
    for old in sorted(set(MOVES) - present):
        print(f"note: {old}.py not in this tree: skipped")
    packages = sorted({new.split(".")[0] for new in moves.values()})
    collide = sorted(old for old in moves if old in packages)  # old module name == new package name

    # 1. read, patch (old layout), rewrite imports (new layout), all in memory
    src = {m: (pkg_dir / f"{m}.py").read_text() for m in present}
    patch_sampling(src)
    patch_classify(src)
    src["hub"] = patch_hub(src)
    out: dict[Path, str] = {}
    for m, text in src.items():
        new_qual = "steerdiff." + moves.get(m, m)
        out[pkg_dir / (moves.get(m, m).replace(".", "/") + ".py")] = rewrite_imports(text, new_qual, moves, f"{m}.py")
    # ``sd.toy`` worked without importing steerdiff.toy (the package's own imports loaded it): old
    # module names stay attributes of the package, resolved on first use through the import system
    init_path = pkg_dir / "__init__.py"
    if "def __getattr__" in out[init_path]:
        raise Refuse("src/steerdiff/__init__.py defines __getattr__ already: merge the old-module attributes by hand")
    out[init_path] = (
        out[init_path].rstrip("\n") + "\n" + OLD_ATTRS.format(names="".join(f'    "{m}",\n' for m in sorted(moves)))
    )
    for p in packages:
        doc = PACKAGE_DOCS.get(p, f"steerdiff.{p}.")
        members = [
            f"- ``{new.split('.', 1)[1]}``: was ``steerdiff.{old}``"
            for old, new in moves.items()
            if new.split(".")[0] == p
        ]
        init = f'"""{doc}\n\nModules:\n\n' + "\n".join(members) + '\n"""\n'
        if p in collide:
            sub = moves[p].split(".", 1)[1]
            names = defined_names(src[p])
            extra = sorted((names_imported_from(root, p) & imported_names(src[p])) - set(names))
            public = [n for n in names + extra if not n.startswith("_")]
            private = [n for n in names + extra if n.startswith("_")]
            init += (
                f"# steerdiff.{p} was one module: every name it defined (private ones too) stays importable from here\n"
            )
            init += wrap_names(f"from .{sub} import ", public)
            if private:
                init += "".join(
                    ln + "  # noqa: F401\n" for ln in wrap_names(f"from .{sub} import ", private).splitlines()
                )
            init += "\n" + wrap_names("__all__ = [", [f'"{n}"' for n in public], close="]")
        out[pkg_dir / p / "__init__.py"] = init
    shims = {}
    for old, new in moves.items():
        if old in collide:
            continue
        parent, leaf = ("steerdiff." + new).rsplit(".", 1)
        shims[pkg_dir / f"{old}.py"] = SHIM.format(
            old=old, new=new, mark=SHIM_MARK, parent=parent.split(".", 1)[1], leaf=leaf
        )
    # tests keep the old import paths (the shims prove them), but a string naming a module that is now a
    # package ("steerdiff.particles", for monkeypatch / import_module) must name the real module
    for f in sorted((root / "tests").glob("*.py")):
        text = f.read_text()
        new_text = re.sub(
            r"""(["'])steerdiff\.({})((?:\.\w+)*)\1""".format("|".join(collide)) if collide else r"(?!x)x",
            lambda mm: (
                mm.group(0)
                if mm.group(3)[1:].split(".")[0]
                in {v.split(".", 1)[1] for v in moves.values() if v.split(".")[0] == mm.group(2)}
                else f"{mm.group(1)}steerdiff.{moves[mm.group(2)]}{mm.group(3)}{mm.group(1)}"
            ),
            text,
        )
        if new_text != text:
            out[f] = new_text
            print(f"note: {f.relative_to(root)}: module-path strings now name the moved module (for monkeypatching)")
        for ln, line in enumerate(new_text.splitlines(), 1):
            if re.search(r"setattr\((sd|steerdiff)\.({})\b".format("|".join(collide or ["(?!x)x"])), line):
                print(
                    f"WARNING: {f.relative_to(root)}:{ln} patches the package steerdiff.{{{','.join(collide)}}}, "
                    "not the module that uses the name: point it at the module in the package",
                    file=sys.stderr,
                )
    test_path = root / "tests" / "test_layout.py"
    out[test_path] = TEST_TEMPLATE.replace(
        "MOVES = {}  # filled in by tools/restructure.py",
        "MOVES = {\n" + "".join(f'    "{o}": "{n}",\n' for o, n in moves.items()) + "}",
    ).replace(
        "COLLIDE = ()  # filled in by tools/restructure.py",
        "COLLIDE = (" + "".join(f'"{c}", ' for c in collide).rstrip(" ") + ")",
    )

    for path, text in {**out, **shims}.items():
        try:
            compile(text, str(path), "exec")
        except SyntaxError as e:
            raise Refuse(f"{path}: the rewrite produced a syntax error ({e}); the tree diverged") from None
    print(f"moves ({len(moves)}):")
    for old, new in moves.items():
        print(
            f"  steerdiff/{old}.py -> steerdiff/{new.replace('.', '/')}.py"
            + ("   (package re-exports the old names)" if old in collide else "   (shim left)")
        )
    print("stays: " + ", ".join(sorted(m for m in present if m not in moves)) + "; new: hub.py, tests/test_layout.py")
    if a.dry_run:
        print("dry run: every patch applies; nothing changed")
        return 0

    # 2. apply: move, write rewritten files, packages, shims, test
    in_git = git(root, "rev-parse", "--is-inside-work-tree", check=False).returncode == 0
    for p in packages:
        (pkg_dir / p).mkdir(exist_ok=True)
    for old, new in moves.items():
        s, d = pkg_dir / f"{old}.py", pkg_dir / (new.replace(".", "/") + ".py")
        tracked = in_git and git(root, "ls-files", "--error-unmatch", str(s), check=False).returncode == 0
        if tracked:
            git(root, "mv", str(s), str(d))
        else:
            shutil.move(s, d)
    for path, text in {**out, **shims}.items():
        path.write_text(text)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():  # e.g. mypy's list of core files
        text = pyproject.read_text()
        new_text = re.sub(
            r"src/steerdiff/(\w+)\.py\b",
            lambda mm: (
                f"src/steerdiff/{moves[mm.group(1)].replace('.', '/')}.py" if mm.group(1) in moves else mm.group(0)
            ),
            text,
        )
        if new_text != text:
            pyproject.write_text(new_text)
            print("note: pyproject.toml: module paths (mypy files) point at the new modules")
    written = [str(p) for p in out if pkg_dir in p.parents or p == test_path] + [str(p) for p in shims]
    if shutil.which("ruff"):  # the rewritten import blocks, sorted as the project's isort settings want
        r = subprocess.run(
            ["ruff", "check", "--no-cache", "--select", "I001", "--fix", "--quiet", *written],
            cwd=root,
            capture_output=True,
            text=True,
        )
        print(
            "note: ruff sorted the import blocks"
            if r.returncode == 0
            else f"note: ruff isort: {r.stdout.strip()[-500:]}"
        )
        created = [
            str(p) for p in [*shims, *(pkg_dir / p / "__init__.py" for p in packages), pkg_dir / "hub.py", test_path]
        ]
        subprocess.run(["ruff", "format", "--no-cache", "--quiet", *created], cwd=root, capture_output=True, text=True)
    else:
        print("note: ruff not found: run  ruff check --select I001 --fix src tests  to sort the rewritten imports")
    print("done: run  python -m pytest -q tests/test_layout.py  then the whole suite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
