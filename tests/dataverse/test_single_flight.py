"""Concurrent callers of one key share one load, and nothing of one caller leaks into another.

The cancellation of one caller never cancels or fails another; a failure reaches each caller as its own
exception object, and is not kept: the next call loads again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import httpx2
import pytest

from dataverse import (
    AccessToken,
    DataverseClient,
    PermissionDenied,
    SingleFlight,
    StaticTokenProvider,
    Throttled,
    UnknownTable,
)
from dataverse._metadata import SingleFlightCache
from sandbox import Fault, Sandbox


def metadata_requests(sandbox: Sandbox) -> int:
    return sum(1 for record in sandbox.request_log.records if "EntityDefinitions" in record.path)


@dataclass
class HeldTokens:
    """A token provider that answers only once released: holds a metadata load in flight for as long as a test needs."""

    token_value: str
    asked: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)

    async def token(self, *, force_refresh: bool = False) -> AccessToken:
        self.asked.set()
        await self.release.wait()
        return AccessToken(self.token_value, time.time() + 3600)


@dataclass
class HeldLoad:
    """A load that waits to be released, then returns `value` or raises `error`; counts its calls."""

    value: str = "value"
    error: BaseException | None = None
    calls: int = 0
    started: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def test_a_cancelled_first_caller_leaves_the_others_their_table(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    tokens = HeldTokens(sandbox.token("admin"))
    dataverse = DataverseClient(http, sandbox.environments["contoso"].url, tokens)
    tables = []
    first = anyio.CancelScope()

    async def first_caller() -> None:
        with first:
            await dataverse.table("account")

    async def look_up() -> None:
        tables.append(await dataverse.table("account"))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(first_caller)
            await tokens.asked.wait()  # the first caller's load is in flight
            for _ in range(5):
                group.start_soon(look_up)
            await anyio.wait_all_tasks_blocked()  # the others wait for it
            first.cancel()
            await anyio.wait_all_tasks_blocked()
            tokens.release.set()
    assert first.cancelled_caught
    assert [table.logical_name for table in tables] == ["account"] * 5
    assert metadata_requests(sandbox) == 1  # the cancelled load never sent its request


async def test_each_waiting_caller_gets_its_own_error_and_the_next_call_loads_again(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    sandbox.faults.add(Fault(status=403, count=1, path="EntityDefinitions"))
    dataverse = DataverseClient(http, sandbox.environments["contoso"].url, StaticTokenProvider(sandbox.token("admin")))
    errors: list[PermissionDenied] = []

    async def look_up() -> None:
        try:
            await dataverse.table("account")
        except PermissionDenied as error:
            errors.append(error)

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(look_up)
    assert metadata_requests(sandbox) == 1
    assert len({id(error) for error in errors}) == 5
    assert {(type(error), str(error), error.status) for error in errors} == {(PermissionDenied, str(errors[0]), 403)}
    assert (await dataverse.table("account")).logical_name == "account"
    assert metadata_requests(sandbox) == 2


async def test_a_cancelled_leader_hands_the_load_to_a_waiter_that_is_not_cancelled() -> None:
    flights: SingleFlight[str] = SingleFlight()
    first, second = HeldLoad("first"), HeldLoad("second")
    leader = anyio.CancelScope()
    values: list[str] = []

    async def lead() -> None:
        with leader:
            await flights.run("key", first)

    async def wait() -> None:
        values.append(await flights.run("key", second))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(lead)
            await first.started.wait()
            for _ in range(3):
                group.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            leader.cancel()
            await second.started.wait()  # a waiter loads again, with its own load
            await anyio.wait_all_tasks_blocked()
            second.release.set()
    assert leader.cancelled_caught
    assert (first.calls, second.calls) == (1, 1)
    assert values == ["second"] * 3


async def test_a_cancelled_waiter_leaves_the_load_and_the_other_waiters_alone() -> None:
    flights: SingleFlight[str] = SingleFlight()
    load = HeldLoad("table")
    impatient = anyio.CancelScope()
    values: list[str] = []

    async def wait_impatiently() -> None:
        with impatient:
            values.append(await flights.run("key", load))

    async def wait() -> None:
        values.append(await flights.run("key", load))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await load.started.wait()
            group.start_soon(wait_impatiently)
            group.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            impatient.cancel()
            await anyio.wait_all_tasks_blocked()
            load.release.set()
    assert impatient.cancelled_caught
    assert (load.calls, values) == (1, ["table", "table"])


def _throttled() -> BaseException:
    return Throttled("Too many requests.", status=429, code=0x80072322, request_id="r-1", retry_after=3.0)


def _noted() -> BaseException:
    error = ValueError("plain")
    error.add_note("a note")
    return error


def _caused() -> BaseException:
    try:
        raise KeyError("inner")
    except KeyError as inner:
        error = RuntimeError("outer")
        error.__cause__ = inner
        return error


@pytest.mark.parametrize(
    "make_error",
    [_throttled, lambda: UnknownTable("acount", ["account"]), _noted, _caused],
    ids=["keyword-only arguments", "own constructor", "notes", "cause"],
)
async def test_each_waiter_raises_its_own_copy_of_the_failure(make_error: Callable[[], BaseException]) -> None:
    flights: SingleFlight[str] = SingleFlight()
    load = HeldLoad(error=make_error())
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await flights.run("key", load)
        except Exception as error:
            errors.append(error)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            load.release.set()
    assert load.calls == 1
    assert len({id(error) for error in errors}) == 4
    original = load.error
    assert original is not None
    for error in errors:
        assert type(error) is type(original)
        assert (str(error), error.args, error.__cause__) == (str(original), original.args, original.__cause__)
        assert {k: v for k, v in vars(error).items() if k != "__notes__"} == {
            k: v for k, v in vars(original).items() if k != "__notes__"
        }
        assert getattr(error, "__notes__", None) == getattr(original, "__notes__", None)
    errors[1].add_note("seen by one caller")
    vars(errors[1])["written"] = "changed by one caller"
    assert "seen by one caller" not in getattr(errors[2], "__notes__", [])
    assert vars(errors[2]).get("written") != "changed by one caller"


async def test_an_exception_group_is_copied_with_its_members() -> None:
    flights: SingleFlight[str] = SingleFlight()
    load = HeldLoad(error=ExceptionGroup("both failed", [ValueError("a"), KeyError("b")]))
    groups: list[ExceptionGroup[Exception]] = []

    async def call() -> None:
        try:
            await flights.run("key", load)
        except ExceptionGroup as group:
            groups.append(group)

    async with anyio.create_task_group() as tasks:
        for _ in range(2):
            tasks.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        load.release.set()
    first, second = groups
    assert first is not second and first.exceptions[0] is not second.exceptions[0]
    assert not {id(member) for member in first.args[1]} & {id(member) for member in second.args[1]}
    assert [repr(error) for error in first.exceptions] == [repr(error) for error in second.exceptions]


async def test_a_failure_is_not_kept_the_next_call_loads_again() -> None:
    flights: SingleFlight[str] = SingleFlight()
    failing = HeldLoad(error=PermissionError("denied"))
    failing.release.set()
    with pytest.raises(PermissionError):
        await flights.run("key", failing)
    working = HeldLoad("loaded")
    working.release.set()
    assert await flights.run("key", working) == "loaded"
    assert (failing.calls, working.calls) == (1, 1)


async def test_different_keys_never_share_a_load() -> None:
    flights: SingleFlight[str] = SingleFlight()
    loads = {key: HeldLoad(key) for key in ("alice", "bob")}
    values: dict[str, str] = {}

    async def call(key: str) -> None:
        values[key] = await flights.run(key, loads[key])

    async with anyio.create_task_group() as group:
        for key in loads:
            group.start_soon(call, key)
        await anyio.wait_all_tasks_blocked()
        for load in loads.values():
            load.release.set()
    assert values == {"alice": "alice", "bob": "bob"}
    assert [load.calls for load in loads.values()] == [1, 1]


async def test_the_metadata_cache_reuses_a_value_until_its_ttl_passes_and_keeps_no_failure() -> None:
    now = [0.0]
    cache: SingleFlightCache[str] = SingleFlightCache(ttl=60, clock=lambda: now[0])
    failing = HeldLoad(error=ConnectionError("down"))
    failing.release.set()
    with pytest.raises(ConnectionError):
        await cache.get("account", failing)
    first = HeldLoad("first")
    first.release.set()
    assert await cache.get("account", first) == "first"
    now[0] = 59.0
    assert await cache.get("account", first) == "first"
    now[0] = 61.0
    second = HeldLoad("second")
    second.release.set()
    assert await cache.get("account", second) == "second"
    assert (failing.calls, first.calls, second.calls) == (1, 1, 1)
