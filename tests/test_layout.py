"""The design's rules about packages: import direction and public API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sandbox

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("server", "tools", "auth", "dataverse")


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


def test_sandbox_exports_exactly_its_public_names() -> None:
    public = {name for name in dir(sandbox) if not name.startswith("_")}
    assert set(sandbox.__all__) == public - {"annotations"}
