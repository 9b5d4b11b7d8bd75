"""The command line is a router (issue #15): its command modules hold commands only, each a short
function that parses, calls the library and writes; every flag lives in ``cli/options.py``; and no
library module imports the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import steerdiff

PKG = Path(steerdiff.__file__).parent
CLI = PKG / "cli"
COMMAND_MODULES = sorted(p for p in CLI.glob("*.py") if p.name != "options.py")


def _functions(path: Path):
    tree = ast.parse(path.read_text())
    return [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


def test_command_modules_define_commands_only():
    for path in COMMAND_MODULES:
        for node in _functions(path):
            assert isinstance(node, ast.FunctionDef), f"{path.name}: class {node.name} belongs in the library"
            allowed = node.name.startswith("cmd_") or node.name in ("main", "_evaluate_edit")
            assert allowed, f"{path.name}: {node.name} is a workflow helper; move it into the library"


def test_router_and_commands_stay_under_500_lines():
    lines = sum(len(p.read_text().splitlines()) for p in COMMAND_MODULES)
    assert lines < 500, f"steerdiff.cli's router and commands have {lines} lines"


def test_flags_are_declared_only_in_options():
    for path in COMMAND_MODULES:
        assert "add_argument(" not in path.read_text(), f"{path.name} declares a flag; declare it in cli/options.py"


def test_no_library_module_imports_the_cli():
    for path in PKG.rglob("*.py"):
        if CLI in path.parents or path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = ("." * node.level) + (node.module or "")
                assert "cli" not in mod.split("."), f"{path.relative_to(PKG)} imports {mod}"
