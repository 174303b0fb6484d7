"""No value can change a query's meaning: any text as a filter value or alternate key finds exactly its row."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataverse import DataverseClient, ODataQuery, StaticTokenProvider, equals
from sandbox import Sandbox

# Quotes, percent signs, ampersands, hashes, slashes, unicode and newlines are all drawn; so is anything else.
TRICKY = st.sampled_from(["'", "''", "%", "%27", "&", "#", "/", "?", "\\", "\n", "é", "😀", " or 1 eq 1", ")", "("])
VALUES = (
    st.lists(st.one_of(TRICKY, st.text(min_size=1, max_size=4)), min_size=1, max_size=6)
    .map("".join)
    .filter(lambda value: 0 < len(value) <= 20)
)


class ThreadedSandbox:
    """A sandbox on its own event loop thread, so that synchronous property tests can call it many times."""

    def __init__(self, data: Path) -> None:
        self.sandbox = Sandbox(data)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Sandbox:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.sandbox.start(), self.loop).result(timeout=30)
        return self.sandbox

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sandbox.stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def shared_sandbox(sandbox_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    data = tmp_path_factory.mktemp("escaping") / "sandbox"
    shutil.copytree(sandbox_template, data)
    with ThreadedSandbox(data) as sandbox:
        yield sandbox


async def round_trip(sandbox: Sandbox, value: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        dataverse = DataverseClient(http, sandbox.environments["contoso"].url, StaticTokenProvider(sandbox.token()))
        written = await dataverse.create("account", {"name": value, "accountnumber": value})
        try:
            rows = []
            async for page in dataverse.query("account", ODataQuery(select=["name"], filter=equals("name", value))):
                rows += page.rows
            assert [row["accountid"] for row in rows] == [written.id]
            assert rows[0]["name"] == value
            by_key = await dataverse.get("account", {"accountnumber": value}, select=["accountnumber"])
            assert by_key["accountid"] == written.id
            assert by_key["accountnumber"] == value
        finally:
            await dataverse.delete("account", written.id)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=VALUES)
def test_any_text_finds_exactly_the_row_holding_it(shared_sandbox: Sandbox, value: str) -> None:
    asyncio.run(round_trip(shared_sandbox, value))
