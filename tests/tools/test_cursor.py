"""The cursor codec on its own: what a cursor opens to, and every way it refuses to."""

from __future__ import annotations

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from tools import CursorExpired, Cursors


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_cursor_opens_to_its_state_for_its_caller_and_tool_only() -> None:
    cursors = Cursors(b"k" * 32)
    cursor = cursors.seal({"e": "contoso", "t": "account", "s": 3}, caller="alice", tool="query_records")
    assert cursors.open(cursor, caller="alice", tool="query_records") == {"e": "contoso", "t": "account", "s": 3}
    for caller, tool in [("bob", "query_records"), ("alice", "list_tables")]:
        with pytest.raises(ToolError, match="not valid"):
            cursors.open(cursor, caller=caller, tool=tool)
    with pytest.raises(ToolError, match="not valid"):
        Cursors(b"x" * 32).open(cursor, caller="alice", tool="query_records")


def test_a_cursor_expires() -> None:
    clock = Clock()
    cursors = Cursors(b"k" * 32, lifetime=60, clock=clock)
    cursor = cursors.seal({"o": 1}, caller="alice", tool="list_tables")
    clock.now += 61
    with pytest.raises(ToolError, match="expired"):
        cursors.open(cursor, caller="alice", tool="list_tables")


def test_a_longer_lifetime_is_chosen_per_seal_and_still_ends() -> None:
    clock = Clock()
    cursors = Cursors(b"k" * 32, lifetime=60, clock=clock)
    token = cursors.seal({"m": "d"}, caller="alice", tool="list_changes token", lifetime=90 * 86400)
    clock.now += 89 * 86400
    assert cursors.open(token, caller="alice", tool="list_changes token") == {"m": "d"}
    clock.now += 2 * 86400
    with pytest.raises(CursorExpired):
        cursors.open(token, caller="alice", tool="list_changes token")


def test_long_state_stays_in_the_server_and_the_cursor_stays_short() -> None:
    cursors = Cursors(b"k" * 32, stored_max=2)
    state = {"a": {"filter": " or ".join(f"name eq '{n}'" for n in range(200))}}
    cursor = cursors.seal(state, caller="alice", tool="query_records")
    assert len(cursor) < 200
    assert cursors.open(cursor, caller="alice", tool="query_records") == state
    for _ in range(2):  # pushed out of the bounded store by newer ones
        cursors.seal({**state, "more": True}, caller="alice", tool="query_records")
    with pytest.raises(ToolError, match="no longer held"):
        cursors.open(cursor, caller="alice", tool="query_records")
