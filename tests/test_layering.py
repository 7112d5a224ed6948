"""Dependencies point one way: perception, localization and sim_data never import zmq or nodes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["perception", "localization", "sim_data"])
def test_pure_packages_do_not_import_the_bus(package):
    offenders = [f"{p.relative_to(ROOT)} imports {sorted(_imports(p) & {'zmq', 'nodes'})}"
                 for p in sorted((ROOT / package).rglob("*.py")) if _imports(p) & {"zmq", "nodes"}]
    assert not offenders, offenders


def test_launch_folder_holds_no_python():
    assert not list((ROOT / "launch").rglob("*.py"))
