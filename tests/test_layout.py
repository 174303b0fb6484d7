"""The design's rules about packages: import direction and public API."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("server", "tools", "auth", "dataverse")
PACKAGES = (*PRODUCT, "sandbox")


def imported_packages(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(("package", "forbidden"), [("dataverse", {"tools", "server"}), ("auth", {"tools", "server"})])
def test_lower_layers_never_import_upper_ones(package: str, forbidden: set[str]) -> None:
    assert not imported_packages(package) & forbidden


def test_the_sandbox_shares_no_code_with_the_product() -> None:
    assert not imported_packages("sandbox") & set(PRODUCT)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_exports_exactly_its_public_names(package: str) -> None:
    module = importlib.import_module(package)
    public = {name for name in dir(module) if not name.startswith("_")}
    assert set(module.__all__) == public - {"annotations"}


def private_imports(package: str) -> list[str]:
    """Where `package` imports a private module or name of another package, as `path:line name`."""
    others = {*PACKAGES, "bench"} - {package}
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                first, *rest = name.split(".")
                if first in others and any(part.startswith("_") and not part.startswith("__") for part in rest):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


@pytest.mark.parametrize("package", [*PACKAGES, "bench"])
def test_no_package_imports_another_ones_private_modules(package: str) -> None:
    offenders = private_imports(package)
    assert not offenders, "private modules or names of another package, export them instead: " + ", ".join(offenders)
