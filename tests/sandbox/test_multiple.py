"""`CreateMultiple`, `UpdateMultiple`, `UpsertMultiple` over real HTTP, as "Use bulk operation messages" shows."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2
import pytest

from sandbox import Fault, Sandbox

from .support import api, auth, error_of

ACCOUNT = "Microsoft.Dynamics.CRM.account"


def account(**values: Any) -> dict[str, Any]:
    return {"@odata.type": ACCOUNT, **values}


async def call(
    sandbox: Sandbox,
    http: httpx2.AsyncClient,
    action: str,
    targets: list[Any],
    entity_set: str = "accounts",
    user: str = "admin",
) -> httpx2.Response:
    url = api(sandbox) + f"/{entity_set}/Microsoft.Dynamics.CRM.{action}"
    return await http.post(url, json={"Targets": targets}, headers=auth(sandbox, user))


async def rows(http: httpx2.AsyncClient, sandbox: Sandbox, prefix: str) -> list[dict[str, Any]]:
    response = await http.get(
        api(sandbox) + f"/accounts?$select=name,accountnumber,_ownerid_value&$filter=startswith(name,'{prefix}')"
        "&$orderby=name",
        headers=auth(sandbox),
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["value"]
    return found


async def test_create_multiple_answers_the_ids_in_order_and_creates_every_row(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    response = await call(sandbox, http, "CreateMultiple", [account(name=f"Bulk {n}") for n in range(3)], user="alice")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == api(sandbox) + "/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
    created = await rows(http, sandbox, "Bulk ")
    assert [row["name"] for row in created] == ["Bulk 0", "Bulk 1", "Bulk 2"]
    assert body["Ids"] == [row["accountid"] for row in created]
    assert {row["_ownerid_value"] for row in created} == {"b0000000-0000-4000-8000-000000000002"}


@pytest.mark.parametrize(
    ("bad_target", "status", "code"),
    [
        (account(name="Bulk " + "x" * 200), 400, "0x80044331"),
        (account(name="Bulk bind", **{"primarycontactid@odata.bind": f"/contacts({uuid.uuid4()})"}), 404, "0x80040217"),
        ({"name": "Bulk untyped"}, 400, "0x80060888"),
        ({"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "Bulk"}, 400, "0x80040203"),
    ],
)
async def test_one_bad_target_fails_create_multiple_and_creates_nothing(
    sandbox: Sandbox, http: httpx2.AsyncClient, bad_target: dict[str, Any], status: int, code: str
) -> None:
    response = await call(sandbox, http, "CreateMultiple", [account(name="Bulk good"), bad_target])
    assert error_of(response)[:2] == (status, code)
    assert await rows(http, sandbox, "Bulk") == []


async def test_a_duplicate_key_in_the_targets_undoes_the_rows_before_it(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    targets = [account(name="Bulk dup 1", accountnumber="DUP-1"), account(name="Bulk dup 2", accountnumber="DUP-1")]
    response = await call(sandbox, http, "CreateMultiple", targets)
    assert error_of(response)[:2] == (412, "0x80040237")
    assert await rows(http, sandbox, "Bulk dup") == []


async def test_update_multiple_changes_each_row_named_by_its_id(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    ids = (await call(sandbox, http, "CreateMultiple", [account(name="Bulk a"), account(name="Bulk b")])).json()["Ids"]
    response = await call(
        sandbox,
        http,
        "UpdateMultiple",
        [account(accountid=ids[0], name="Bulk a updated"), account(accountid=ids[1], telephone1="555")],
    )
    assert response.status_code == 204
    assert response.content == b""
    assert [(row["name"], row["accountid"]) for row in await rows(http, sandbox, "Bulk")] == [
        ("Bulk a updated", ids[0]),
        ("Bulk b", ids[1]),
    ]


async def test_update_multiple_of_a_missing_row_changes_nothing(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    [row_id] = (await call(sandbox, http, "CreateMultiple", [account(name="Bulk kept")])).json()["Ids"]
    missing = str(uuid.uuid4())
    response = await call(
        sandbox,
        http,
        "UpdateMultiple",
        [account(accountid=row_id, name="Bulk changed"), account(accountid=missing, name="Bulk ghost")],
    )
    status, code, message = error_of(response)
    assert (status, code) == (404, "0x80040217")
    assert missing in message
    assert [row["name"] for row in await rows(http, sandbox, "Bulk")] == ["Bulk kept"]
    no_id = await call(sandbox, http, "UpdateMultiple", [account(name="Bulk no id")])
    assert error_of(no_id)[:2] == (400, "0x80040203")


async def test_upsert_multiple_updates_rows_that_exist_and_creates_the_rest(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    existing = (await http.get(api(sandbox) + "/accounts(accountnumber='A-1003')", headers=auth(sandbox))).json()
    new_id = str(uuid.uuid4())
    response = await call(
        sandbox,
        http,
        "UpsertMultiple",
        [
            account(name="Bulk upserted existing", **{"@odata.id": "accounts(accountnumber='A-1003')"}),
            account(name="Bulk upserted new", **{"@odata.id": "accounts(accountnumber='UPS-2')"}),
            account(name="Bulk upserted by id", accountid=new_id),
        ],
    )
    assert response.status_code == 204, response.text
    found = {row["name"]: row for row in await rows(http, sandbox, "Bulk upserted")}
    assert found["Bulk upserted existing"]["accountid"] == existing["accountid"]
    assert found["Bulk upserted new"]["accountnumber"] == "UPS-2"
    assert found["Bulk upserted by id"]["accountid"] == new_id


async def test_bulk_messages_apply_the_callers_security_to_every_row(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    refused = await call(sandbox, http, "CreateMultiple", [account(name="Bulk by carol")], user="carol")
    assert error_of(refused)[:2] == (403, "0x80040220")
    alices = (await http.get(api(sandbox) + "/accounts?$top=1", headers=auth(sandbox, "alice"))).json()["value"][0]
    [bobs] = (await call(sandbox, http, "CreateMultiple", [account(name="Bulk by bob")], user="bob")).json()["Ids"]
    denied = await call(
        sandbox,
        http,
        "UpdateMultiple",
        [account(accountid=bobs, name="Bulk bob renamed"), account(accountid=alices["accountid"], name="Bulk taken")],
        user="bob",
    )
    assert error_of(denied)[:2] == (403, "0x80048306")
    assert [row["name"] for row in await rows(http, sandbox, "Bulk")] == ["Bulk by bob"]


@pytest.mark.parametrize("action", ["CreateMultiple", "UpdateMultiple", "UpsertMultiple"])
async def test_platform_tables_do_not_support_bulk_messages(
    sandbox: Sandbox, http: httpx2.AsyncClient, action: str
) -> None:
    target = {"@odata.type": "Microsoft.Dynamics.CRM.transactioncurrency", "currencyname": "Bulk"}
    response = await call(sandbox, http, action, [target], entity_set="transactioncurrencies")
    assert error_of(response) == (
        400,
        "0x80040800",
        f"The '{action}' method does not support entities of type 'transactioncurrency'. "
        "MessageProcessorCache returned MessageProcessor.Empty.",
    )


async def test_the_custom_table_supports_bulk_messages(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    target = {"@odata.type": "Microsoft.Dynamics.CRM.cr8a1_project", "cr8a1_name": "Bulk project", "cr8a1_code": "BP-1"}
    response = await call(sandbox, http, "CreateMultiple", [target], entity_set="cr8a1_projects")
    assert response.status_code == 200, response.text
    [project_id] = response.json()["Ids"]
    row = await http.get(api(sandbox) + "/cr8a1_projects(cr8a1_code='BP-1')?$select=cr8a1_name", headers=auth(sandbox))
    assert row.json()["cr8a1_projectid"] == project_id


@pytest.mark.parametrize(
    ("action", "method", "status", "message_part"),
    [
        ("DeleteMultiple", "POST", 400, "DeleteMultiple has not yet been implemented."),
        ("NoSuchAction", "POST", 404, "Resource not found for the segment 'Microsoft.Dynamics.CRM.NoSuchAction'."),
        ("CreateMultiple", "GET", 405, "POST"),
    ],
)
async def test_other_bound_actions_are_refused(
    sandbox: Sandbox, http: httpx2.AsyncClient, action: str, method: str, status: int, message_part: str
) -> None:
    url = api(sandbox) + f"/accounts/Microsoft.Dynamics.CRM.{action}"
    response = await http.request(method, url, json={"Targets": []}, headers=auth(sandbox))
    assert error_of(response)[0] == status
    assert message_part in error_of(response)[2]


async def test_a_bulk_message_inside_a_batch_change_set_rolls_back_with_it(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    sandbox.faults.add(Fault(status=503, path=r"/contacts$"))
    body = (
        "--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n"
        "--changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "POST accounts/Microsoft.Dynamics.CRM.CreateMultiple HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
        '{"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.account", "name": "Bulk in batch"}]}\r\n'
        "--changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        'POST contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{"lastname": "Never"}\r\n'
        "--changeset_1--\r\n--batch_1--\r\n"
    )
    headers = {**auth(sandbox), "Content-Type": "multipart/mixed; boundary=batch_1"}
    response = await http.post(api(sandbox) + "/$batch", content=body.encode(), headers=headers)
    assert response.status_code == 503
    assert await rows(http, sandbox, "Bulk") == []
