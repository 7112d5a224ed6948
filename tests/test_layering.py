"""Dependencies point one way: perception, localization and sim_data never import zmq or nodes.

Two checks, because each misses what the other sees:
- at run time, every module of the pure packages is imported in a fresh interpreter and ``sys.modules``
  must then hold neither ``zmq`` nor ``nodes`` (catches an import through another module, ``__import__``
  and ``importlib`` at import time, whatever their spelling);
- in the source, no import statement, ``__import__("...")`` or ``importlib.import_module("...")`` of
  them anywhere, function bodies included (catches a lazy import that only runs when called).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PURE_PACKAGES = ("perception", "localization", "sim_data")
FORBIDDEN = {"zmq", "nodes"}

# Imports the given modules in turn; after each one, reports the forbidden top-level packages that
# appeared in sys.modules, blaming the module whose import brought them in. The names come from the file
# system, not pkgutil.walk_packages, which imports packages to walk them: an import outside the check.
_PROBE = """
import importlib, json, sys
forbidden = set(sys.argv[1].split(","))
report = {"modules": [], "offenders": {}}
for name in sys.argv[2:]:
    before = forbidden & {m.split(".")[0] for m in sys.modules}
    importlib.import_module(name)
    report["modules"].append(name)
    new = (forbidden & {m.split(".")[0] for m in sys.modules}) - before
    if new:
        report["offenders"][name] = sorted(new)
print(json.dumps(report))
"""


def module_names(root: Path, packages: tuple[str, ...]) -> list[str]:
    """Dotted names of every module under ``packages`` (packages before their modules)."""
    names = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names, key=lambda n: (n.count("."), n))


def imports_report(root: Path, modules: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE, ",".join(sorted(FORBIDDEN)), *modules], cwd=root,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_importing_every_pure_module_loads_neither_zmq_nor_nodes():
    modules = module_names(ROOT, PURE_PACKAGES)
    assert {"perception", "localization.nmea", "sim_data.drive"} <= set(modules) and len(modules) > 30
    report = imports_report(ROOT, modules)
    assert report["modules"] == modules
    assert report["offenders"] == {}


def _string_arg(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def imported_names(source: str, filename: str = "<source>") -> set[str]:
    """Top-level package names a module imports anywhere in its source: import statements, and
    ``__import__``/``importlib.import_module``/``import_module`` called with a literal name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called in ("__import__", "import_module") and (name := _string_arg(node)):
                names.add(name.split(".")[0])
    return names


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_pure_packages_do_not_import_the_bus_even_lazily(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_names(path.read_text(), str(path)) & FORBIDDEN
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, offenders


@pytest.mark.parametrize("source", [
    "import zmq", "from nodes.bus import messages", "def f():\n    import zmq.asyncio",
    "z = __import__('zmq')", "import importlib\nm = importlib.import_module('nodes.bus')",
    "from importlib import import_module\nm = import_module('zmq')",
])
def test_the_source_check_sees_every_spelling(source):
    assert imported_names(source) & FORBIDDEN


def test_the_import_check_blames_an_indirect_import(tmp_path):
    # a package whose __init__ reaches zmq only through __import__ in a module it imports
    pkg = tmp_path / "fakepure"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import user\n")
    (pkg / "helper.py").write_text("bus = __import__('zmq')\n")
    (pkg / "user.py").write_text("from . import helper\n")
    report = imports_report(tmp_path, module_names(tmp_path, ("fakepure",)))
    assert report["offenders"] == {"fakepure": ["zmq"]}


def test_launch_folder_holds_no_python():
    assert not list((ROOT / "launch").rglob("*.py"))
