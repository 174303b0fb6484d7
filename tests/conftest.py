"""Shared fixtures: a seeded sandbox serving real HTTP on loopback, fresh for every test."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from sandbox import Sandbox


@pytest.fixture(autouse=True)
def private_data_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes to the user's data directory (the zero-setup sandbox keeps its data there)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))


@pytest.fixture(scope="session")
def sandbox_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded data and a signing key, made once per run and copied for each test (seeding costs time)."""
    path = tmp_path_factory.mktemp("sandbox-template")
    Sandbox(path).prepare()
    return path


@pytest.fixture
async def sandbox(sandbox_template: Path, tmp_path: Path) -> AsyncIterator[Sandbox]:
    data = tmp_path / "sandbox"
    shutil.copytree(sandbox_template, data)
    async with Sandbox(data) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client
