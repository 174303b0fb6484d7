"""The audit log: one line per attempted write with its outcome, whatever the model tried."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from sandbox import Fault, Sandbox
from server import build_server
from server._http import running

from ..resilience.support import instant_retries
from ..server.test_http import http_settings, sign_in
from .support import error_text, server_for, settings_for, structured
from .test_session import answering, row_exists

WRITE_TOOLS = ["create_record", "update_record", "upsert_record", "delete_record"]


def audited(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "dynamics_mcp.audit"]


async def a_lead(sandbox: Sandbox, http: httpx2.AsyncClient) -> str:
    response = await http.get(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/leads?$select=subject&$top=1",
        headers={"Authorization": f"Bearer {sandbox.token()}"},
    )
    return str(response.json()["value"][0]["leadid"])


def arguments(tool: str, row_id: str, **extra: Any) -> dict[str, Any]:
    """Arguments of `tool` that would write the lead `row_id` (a create writes a new lead)."""
    if tool == "create_record":
        return {"table": "lead", "values": {"subject": "Secret plan", "lastname": "Higa"}, **extra}
    if tool == "delete_record":
        return {"table": "lead", "id": row_id, **extra}
    return {"table": "lead", "id": row_id, "values": {"subject": "Secret plan"}, **extra}


async def test_each_write_that_succeeds_is_audited_once_as_written(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    row_id = str(uuid.uuid4())
    async with Client(server_for(sandbox)) as client:
        created = structured(await client.call_tool("create_record", arguments("create_record", row_id)))
        structured(await client.call_tool("update_record", arguments("update_record", created["id"])))
        structured(await client.call_tool("upsert_record", arguments("upsert_record", row_id)))
        structured(await client.call_tool("delete_record", arguments("delete_record", row_id, confirm=True)))
    user = "user=token"
    assert audited(caplog) == [
        f"create_record outcome=written table=lead id={created['id']} environment=contoso {user}",
        f"update_record outcome=written table=lead id={created['id']} environment=contoso {user}",
        f"upsert_record outcome=written table=lead id={row_id} environment=contoso {user}",
        f"delete_record outcome=written table=lead id={row_id} environment=contoso {user}",
    ]


async def test_a_create_with_an_unknown_column_is_audited_as_not_written(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    async with Client(server_for(sandbox)) as client:
        result = await client.call_tool("create_record", {"table": "Lead", "values": {"subjct": "Secret plan"}})
    assert "No column 'subjct'" in error_text(result)
    assert audited(caplog) == [
        'create_record outcome="not written" reason=invalid table=lead id=- environment=contoso user=token'
    ]


@pytest.mark.parametrize("tool", WRITE_TOOLS)
async def test_a_write_to_a_denied_table_is_refused_audited_and_never_asked(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture, tool: str
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    row_id = await a_lead(sandbox, http)
    elicitation = answering("accept")
    async with Client(server_for(sandbox, denied_tables="lead"), elicitation_callback=elicitation) as client:
        result = await client.call_tool(tool, arguments(tool, row_id))
    assert "not available through this server" in error_text(result)
    assert elicitation.asked == []
    assert await row_exists(sandbox, http, "leads", row_id)
    [line] = audited(caplog)
    assert line.startswith(f'{tool} outcome="not written" reason=refused table=')
    assert "Secret plan" not in line


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_a_delete_without_its_scope_is_refused_audited_and_never_asked(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    row_id = await a_lead(sandbox, http)
    alice = await sign_in(sandbox, "alice")  # her token grants user_impersonation only
    elicitation = answering("accept")
    async with (
        running(http_settings(sandbox, tool_scopes={"delete_record": ["Records.Delete"]})) as url,
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {alice}"}, timeout=30) as signed_in,
        Client(
            streamable_http_client(f"{url}/mcp", http_client=signed_in), mode=mode, elicitation_callback=elicitation
        ) as client,
    ):
        refused = error_text(await client.call_tool("delete_record", {"table": "lead", "id": row_id}))
    assert "delete_record needs the scope Records.Delete" in refused
    assert elicitation.asked == []
    assert await row_exists(sandbox, http, "leads", row_id)
    [line] = audited(caplog)
    assert line.startswith(f"delete_record outcome=\"not written\" reason=refused table='lead' id={row_id} ")
    assert "user=alice" in line


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_a_declined_delete_is_audited_as_declined(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture, mode: str, action: str
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    row_id = await a_lead(sandbox, http)
    async with Client(server_for(sandbox), mode=mode, elicitation_callback=answering(action)) as client:
        assert structured(await client.call_tool("delete_record", {"table": "leads", "id": row_id}))["deleted"] is False
    assert audited(caplog) == [
        f'delete_record outcome="not written" reason=declined table=lead id={row_id} environment=contoso user=token'
    ]


async def test_a_delete_nobody_could_confirm_is_audited_as_unconfirmed(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    row_id = await a_lead(sandbox, http)
    async with Client(server_for(sandbox), mode="legacy") as client:
        assert "confirm: true" in error_text(await client.call_tool("delete_record", {"table": "lead", "id": row_id}))
    assert audited(caplog) == [
        f'delete_record outcome="not written" reason=unconfirmed table=lead id={row_id} environment=contoso user=token'
    ]


@pytest.mark.parametrize(("method", "tool"), [("POST", "create_record"), ("PATCH", "update_record")])
async def test_a_write_whose_answer_is_lost_is_audited_as_unknown(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture, method: str, tool: str
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    row_id = await a_lead(sandbox, http)
    retry, _ = instant_retries()
    async with Client(build_server(settings_for(sandbox), retry=retry)) as client:
        sandbox.faults.add(Fault(kind="drop_after", count=20, method=method))  # committed, never answered
        result = await client.call_tool(tool, arguments(tool, row_id))
    assert "may or may not have been" in error_text(result)
    [line] = audited(caplog)
    assert line.startswith(f"{tool} outcome=unknown reason=failed table=lead id=")
    written = line.split(" id=", 1)[1].split()[0]
    sandbox.faults.clear()
    assert await row_exists(sandbox, http, "leads", written)  # the line names the row to check
    if tool == "update_record":
        assert written == row_id


async def test_a_name_the_model_typed_cannot_forge_a_line(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    forged = "nothing\ncreate_record outcome=written table=account id=1 environment=contoso user=admin" + "x" * 100
    async with Client(server_for(sandbox)) as client:
        error_text(await client.call_tool("create_record", {"table": forged, "values": {"name": "X"}}))
        error_text(
            await client.call_tool("delete_record", {"table": "lead", "id": str(uuid.uuid4()), "environment": forged})
        )
    [create, delete] = audited(caplog)
    assert create.startswith('create_record outcome="not written" reason=invalid table=\'nothing\\ncreate_record ')
    assert "\n" not in create and "x" * 40 not in create
    assert "environment='nothing\\ncreate_record " in delete and "\n" not in delete
