"""What the code imports is what pyproject.toml declares (a fresh machine installs only that)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs.extend(extra)
    return {_norm(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in specs}


def _imported_modules() -> dict[str, str]:
    """Top-level third-party modules imported anywhere in src/, with one file that does."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "dirconnector":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_in_src_is_a_declared_dependency() -> None:
    """Each module src/ imports comes from a distribution named in pyproject.toml."""
    declared = _declared()
    owners = importlib.metadata.packages_distributions()
    undeclared = []
    for module, where in _imported_modules().items():
        dists = {_norm(d) for d in owners.get(module, [])}
        assert dists, f"{module} (imported by {where}) is not installed: scripts/test installs " \
                      f"every extra, so it is missing from pyproject.toml"
        if not dists & declared:
            undeclared.append(f"{module} (from {'/'.join(sorted(dists))}, imported by {where})")
    assert not undeclared, "imported but not declared in pyproject.toml: " + "; ".join(undeclared)


def test_the_check_sees_an_undeclared_import() -> None:
    """The scan finds the imports it must judge (urllib3, imported by dirconnector.http)."""
    assert "urllib3" in _imported_modules()
    assert "urllib3" in _declared()
