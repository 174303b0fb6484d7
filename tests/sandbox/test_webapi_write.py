"""Writing rows over real HTTP: create, update, upsert, delete, etags, keys and @odata.bind."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2
import pytest

from sandbox import Sandbox

from .support import api, auth, error_of


async def get_row(http: httpx2.AsyncClient, sandbox: Sandbox, path: str, user: str = "admin") -> dict[str, Any]:
    response = await http.get(api(sandbox) + path, headers=auth(sandbox, user))
    assert response.status_code == 200, response.text
    row: dict[str, Any] = response.json()
    return row


async def count(http: httpx2.AsyncClient, sandbox: Sandbox, entity_set: str, filter_text: str) -> int:
    response = await http.get(api(sandbox) + f"/{entity_set}?$count=true&$filter={filter_text}", headers=auth(sandbox))
    total: int = response.json()["@odata.count"]
    return total


async def test_create_answers_204_with_the_new_rows_url(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.post(
        api(sandbox) + "/accounts", json={"name": "Northwind Fresh"}, headers=auth(sandbox, "alice")
    )
    assert response.status_code == 204
    location = response.headers["odata-entityid"]
    assert location.startswith(api(sandbox) + "/accounts(")
    row = await get_row(http, sandbox, location.removeprefix(api(sandbox)) + "?$select=name,_ownerid_value")
    assert row["name"] == "Northwind Fresh"
    assert row["_ownerid_value"] == "b0000000-0000-4000-8000-000000000002"


async def test_create_with_return_representation_answers_201_and_the_row(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    headers = auth(sandbox, Prefer="return=representation")
    response = await http.post(
        api(sandbox) + "/accounts?$select=name,accountid",
        json={"name": "Fourth Coffee East"},
        headers=headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Fourth Coffee East"
    assert body["@odata.etag"].startswith('W/"')
    assert set(body) == {"@odata.context", "@odata.etag", "name", "accountid"}


async def test_client_supplied_id_is_kept_and_a_second_create_is_a_duplicate(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    row_id = str(uuid.uuid4())
    headers = auth(sandbox)
    first = await http.post(api(sandbox) + "/accounts", json={"accountid": row_id, "name": "Once"}, headers=headers)
    assert first.headers["odata-entityid"].endswith(f"/accounts({row_id})")
    second = await http.post(api(sandbox) + "/accounts", json={"accountid": row_id, "name": "Twice"}, headers=headers)
    status, code, message = error_of(second)
    assert (status, code) == (412, "0x80040237")
    assert "already exists" in message
    assert (await get_row(http, sandbox, f"/accounts({row_id})?$select=name"))["name"] == "Once"


async def test_bind_sets_lookups_including_polymorphic_and_custom(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    headers = auth(sandbox, Prefer="return=representation")
    account = await get_row(http, sandbox, "/accounts(accountnumber='A-1003')?$select=name")
    account_id = account["accountid"]
    contact = await http.post(
        api(sandbox) + "/contacts",
        json={
            "firstname": "Ada",
            "lastname": "Lovelace",
            "parentcustomerid_account@odata.bind": f"/accounts({account_id})",
        },
        headers=headers,
    )
    assert contact.status_code == 201, contact.text
    assert contact.json()["_parentcustomerid_value"] == account_id
    assert contact.json()["fullname"] == "Ada Lovelace"
    project = await http.post(
        api(sandbox) + "/cr8a1_projects",
        json={"cr8a1_name": "Bind test", "cr8a1_AccountId@odata.bind": f"accounts({account_id})"},
        headers=headers,
    )
    assert project.status_code == 201, project.text
    assert project.json()["_cr8a1_accountid_value"] == account_id
    by_key = await http.post(
        api(sandbox) + "/leads",
        json={
            "subject": "By key",
            "lastname": "K",
            "parentaccountid@odata.bind": "/accounts(accountnumber='A-1003')",
        },
        headers=headers,
    )
    assert by_key.json()["_parentaccountid_value"] == account_id


async def test_update_changes_only_the_given_columns_and_the_etag(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    before = await get_row(http, sandbox, "/accounts(accountnumber='A-1004')?$select=name,telephone1")
    response = await http.patch(
        api(sandbox) + f"/accounts({before['accountid']})",
        json={"telephone1": "+1 555 0100"},
        headers=auth(sandbox, **{"If-Match": "*"}),
    )
    assert response.status_code == 204
    after = await get_row(http, sandbox, f"/accounts({before['accountid']})?$select=name,telephone1")
    assert after["telephone1"] == "+1 555 0100"
    assert after["name"] == before["name"]
    assert after["@odata.etag"] != before["@odata.etag"]


async def test_if_match_with_a_stale_etag_is_refused_and_changes_nothing(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    row = await get_row(http, sandbox, "/accounts(accountnumber='A-1005')?$select=name")
    url = api(sandbox) + f"/accounts({row['accountid']})"
    first = await http.patch(
        url, json={"name": "First writer"}, headers=auth(sandbox, **{"If-Match": row["@odata.etag"]})
    )
    assert first.status_code == 204
    second = await http.patch(
        url, json={"name": "Second writer"}, headers=auth(sandbox, **{"If-Match": row["@odata.etag"]})
    )
    assert error_of(second)[:2] == (412, "0x80060882")
    deleted = await http.delete(url, headers=auth(sandbox, **{"If-Match": row["@odata.etag"]}))
    assert deleted.status_code == 412
    assert (await get_row(http, sandbox, f"/accounts({row['accountid']})?$select=name"))["name"] == "First writer"


async def test_patch_to_a_missing_row_creates_it_unless_if_match(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    row_id = str(uuid.uuid4())
    url = api(sandbox) + f"/accounts({row_id})"
    refused = await http.patch(url, json={"name": "Update only"}, headers=auth(sandbox, **{"If-Match": "*"}))
    assert error_of(refused)[:2] == (404, "0x80040217")
    created = await http.patch(url, json={"name": "Upserted"}, headers=auth(sandbox))
    assert created.status_code == 204
    assert (await get_row(http, sandbox, f"/accounts({row_id})?$select=name"))["name"] == "Upserted"
    create_only = await http.patch(url, json={"name": "Create only"}, headers=auth(sandbox, **{"If-None-Match": "*"}))
    assert error_of(create_only)[:2] == (412, "0x80040237")
    assert (await get_row(http, sandbox, f"/accounts({row_id})?$select=name"))["name"] == "Upserted"


async def test_upsert_by_alternate_key(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    url = api(sandbox) + "/accounts(accountnumber='NEW-1')"
    headers = auth(sandbox, Prefer="return=representation")
    created = await http.patch(url, json={"name": "Keyed"}, headers=headers)
    assert created.status_code == 201
    assert created.json()["accountnumber"] == "NEW-1"
    updated = await http.patch(url, json={"name": "Keyed again"}, headers=headers)
    assert updated.status_code == 200
    assert updated.json()["accountid"] == created.json()["accountid"]


async def test_delete_removes_the_row_and_a_second_delete_is_not_found(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    created = await http.post(api(sandbox) + "/accounts", json={"name": "Short lived"}, headers=auth(sandbox))
    url = created.headers["odata-entityid"]
    assert (await http.delete(url, headers=auth(sandbox))).status_code == 204
    assert error_of(await http.delete(url, headers=auth(sandbox)))[:2] == (404, "0x80040217")


async def test_delete_ref_clears_a_lookup(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    account = await get_row(http, sandbox, "/accounts(accountnumber='A-1006')?$select=_primarycontactid_value")
    assert account["_primarycontactid_value"]
    response = await http.delete(
        api(sandbox) + f"/accounts({account['accountid']})/primarycontactid/$ref", headers=auth(sandbox)
    )
    assert response.status_code == 204
    after = await get_row(http, sandbox, f"/accounts({account['accountid']})?$select=_primarycontactid_value")
    assert after["_primarycontactid_value"] is None


@pytest.mark.parametrize(
    ("body", "code", "message_part"),
    [
        ({"nosuchcolumn": 1}, "0x80060888", "The property 'nosuchcolumn' does not exist"),
        ({"name": "x" * 161}, "0x80044331", "exceeded the maximum allowed length of '160'"),
        ({"numberofemployees": "many"}, "0x80060888", "Cannot convert the literal 'many'"),
        ({"numberofemployees": -5}, "0x80044331", "outside the valid range"),
        ({"industrycode": 999}, "0x80044331", "outside the valid range"),
        ({"createdon": "2024-01-01T00:00:00Z"}, "0x80060888", "not valid for create"),
        ({"_primarycontactid_value": str(uuid.uuid4())}, "0x80060888", "@odata.bind"),
        (
            {"primarycontactid@odata.bind": "/contacts(00000000-0000-0000-0000-000000000009)"},
            "0x80040217",
            "Does Not Exist",
        ),
        (
            {"primarycontactid@odata.bind": "/accounts(accountnumber='A-1001')"},
            "0x80060888",
            "points at 'contact'",
        ),
        ([1, 2], "0x80060888", "JSON object"),
    ],
)
async def test_bad_bodies_are_refused_and_nothing_is_written(
    sandbox: Sandbox, http: httpx2.AsyncClient, body: Any, code: str, message_part: str
) -> None:
    before = await count(http, sandbox, "accounts", "statecode eq 0")
    response = await http.post(api(sandbox) + "/accounts", json=body, headers=auth(sandbox))
    status, actual_code, message = error_of(response)
    assert status in (400, 404)
    assert actual_code == code
    assert message_part in message
    assert await count(http, sandbox, "accounts", "statecode eq 0") == before


async def test_invalid_json_is_a_400(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    headers = {**auth(sandbox), "Content-Type": "application/json"}
    response = await http.post(api(sandbox) + "/accounts", content=b"{not json", headers=headers)
    assert error_of(response)[0] == 400
