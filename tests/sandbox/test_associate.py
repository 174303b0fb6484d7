"""Linking rows over real HTTP: `$ref` on 1:N, N:N and single-valued navigation properties, and N:N reads."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from sandbox import Sandbox

from .support import api, auth, error_of


async def first(http: httpx2.AsyncClient, sandbox: Sandbox, entity_set: str, user: str = "admin") -> str:
    """The id of the first row of `entity_set` that `user` sees."""
    primary_id = {"cr8a1_projects": "cr8a1_projectid"}.get(entity_set, entity_set.removesuffix("s") + "id")
    response = await http.get(api(sandbox) + f"/{entity_set}?$select={primary_id}&$top=1", headers=auth(sandbox, user))
    assert response.status_code == 200, response.text
    row_id: str = response.json()["value"][0][primary_id]
    return row_id


async def rows(http: httpx2.AsyncClient, sandbox: Sandbox, path: str, user: str = "admin") -> list[dict[str, Any]]:
    response = await http.get(api(sandbox) + path, headers=auth(sandbox, user))
    assert response.status_code == 200, response.text
    value: list[dict[str, Any]] = response.json()["value"]
    return value


async def link(
    http: httpx2.AsyncClient, sandbox: Sandbox, path: str, target: str, user: str = "admin", method: str = "POST"
) -> httpx2.Response:
    """`<method> <path>/$ref` with `{"@odata.id": <target>}` (a URL relative to the API root is made absolute)."""
    reference = target if target.startswith("http") else f"{api(sandbox)}/{target}"
    return await http.request(
        method, api(sandbox) + f"{path}/$ref", json={"@odata.id": reference}, headers=auth(sandbox, user)
    )


async def test_an_account_and_a_lead_are_linked_read_from_both_sides_and_unlinked(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account, lead = await first(http, sandbox, "accounts"), await first(http, sandbox, "leads")
    response = await link(http, sandbox, f"/accounts({account})/accountleads_association", f"leads({lead})")
    assert (response.status_code, response.content) == (204, b"")

    leads = await rows(http, sandbox, f"/accounts({account})/accountleads_association?$select=fullname")
    assert [row["leadid"] for row in leads] == [lead]
    accounts = await rows(http, sandbox, f"/leads({lead})/accountleads_association?$select=name")
    assert [row["accountid"] for row in accounts] == [account]
    count = await http.get(
        api(sandbox) + f"/accounts({account})/accountleads_association/$count", headers=auth(sandbox)
    )
    assert count.text == "1"
    expanded = await http.get(
        api(sandbox) + f"/accounts({account})?$select=name&$expand=accountleads_association($select=fullname)",
        headers=auth(sandbox),
    )
    assert [row["leadid"] for row in expanded.json()["accountleads_association"]] == [lead]
    lambda_filter = f"accountleads_association/any(l: l/leadid eq {lead})"
    assert [
        row["accountid"] for row in await rows(http, sandbox, f"/accounts?$select=name&$filter={lambda_filter}")
    ] == [account]
    intersect = await rows(http, sandbox, "/accountleadscollection?$select=accountid,leadid")
    assert [(row["accountid"], row["leadid"]) for row in intersect] == [(account, lead)]

    unlinked = await http.delete(
        api(sandbox) + f"/accounts({account})/accountleads_association({lead})/$ref", headers=auth(sandbox)
    )
    assert unlinked.status_code == 204
    assert await rows(http, sandbox, f"/accounts({account})/accountleads_association") == []
    again = await http.delete(
        api(sandbox) + f"/accounts({account})/accountleads_association({lead})/$ref", headers=auth(sandbox)
    )
    assert again.status_code == 204  # removing a link that is not there changes nothing


async def test_linking_an_n_to_n_pair_twice_is_the_duplicate_key_error(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account, lead = await first(http, sandbox, "accounts"), await first(http, sandbox, "leads")
    path = f"/accounts({account})/accountleads_association"
    assert (await link(http, sandbox, path, f"leads({lead})")).status_code == 204
    twice = await link(http, sandbox, f"/leads({lead})/accountleads_association", f"accounts({account})")
    assert error_of(twice) == (412, "0x80040237", "Cannot insert duplicate key.")
    assert len(await rows(http, sandbox, "/accountleadscollection")) == 1


async def test_an_n_to_n_link_is_removed_by_id_option_and_with_either_row(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account, lead = await first(http, sandbox, "accounts"), await first(http, sandbox, "leads")
    path = f"/accounts({account})/accountleads_association"
    await link(http, sandbox, path, f"leads({lead})")
    by_id = await http.delete(
        api(sandbox) + f"{path}/$ref", params={"$id": f"{api(sandbox)}/leads({lead})"}, headers=auth(sandbox)
    )
    assert by_id.status_code == 204
    assert await rows(http, sandbox, "/accountleadscollection") == []

    await link(http, sandbox, path, f"leads({lead})")
    assert (await http.delete(api(sandbox) + f"/leads({lead})", headers=auth(sandbox))).status_code == 204
    assert await rows(http, sandbox, "/accountleadscollection") == []


async def test_a_custom_n_to_n_links_projects_and_contacts(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    project, contact = await first(http, sandbox, "cr8a1_projects"), await first(http, sandbox, "contacts")
    response = await link(
        http, sandbox, f"/contacts({contact})/cr8a1_project_stakeholders", f"cr8a1_projects({project})"
    )
    assert response.status_code == 204
    stakeholders = await rows(http, sandbox, f"/cr8a1_projects({project})/cr8a1_project_stakeholders?$select=fullname")
    assert [row["contactid"] for row in stakeholders] == [contact]


async def test_a_one_to_many_collection_link_sets_and_clears_the_childs_lookup(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = await first(http, sandbox, "accounts")
    other = (await rows(http, sandbox, "/accounts?$select=name&$top=2"))[1]["accountid"]
    contact = (await rows(http, sandbox, f"/contacts?$select=fullname&$filter=_parentcustomerid_value ne {account}"))[0]
    contact_id = contact["contactid"]
    path = f"/accounts({account})/contact_customer_accounts"
    assert (await link(http, sandbox, path, f"contacts({contact_id})")).status_code == 204
    parent = f"/contacts({contact_id})?$select=_parentcustomerid_value"

    async def parent_of() -> Any:
        response = await http.get(api(sandbox) + parent, headers=auth(sandbox, Prefer='odata.include-annotations="*"'))
        body = response.json()
        return body["_parentcustomerid_value"], body.get(
            "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"
        )

    assert await parent_of() == (account, "account")
    # Removing it from another account's collection removes nothing.
    elsewhere = await http.delete(
        api(sandbox) + f"/accounts({other})/contact_customer_accounts({contact_id})/$ref", headers=auth(sandbox)
    )
    assert elsewhere.status_code == 204
    assert await parent_of() == (account, "account")
    removed = await http.delete(api(sandbox) + f"{path}({contact_id})/$ref", headers=auth(sandbox))
    assert removed.status_code == 204
    assert (await parent_of())[0] is None


async def test_a_single_valued_navigation_property_is_set_with_put_and_cleared_with_delete(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account, contact = await first(http, sandbox, "accounts"), await first(http, sandbox, "contacts")
    path = f"/accounts({account})/primarycontactid"
    assert (await link(http, sandbox, path, f"contacts({contact})", method="PUT")).status_code == 204
    row = await http.get(api(sandbox) + f"/accounts({account})?$select=_primarycontactid_value", headers=auth(sandbox))
    assert row.json()["_primarycontactid_value"] == contact
    assert (await http.delete(api(sandbox) + f"{path}/$ref", headers=auth(sandbox))).status_code == 204
    row = await http.get(api(sandbox) + f"/accounts({account})?$select=_primarycontactid_value", headers=auth(sandbox))
    assert row.json()["_primarycontactid_value"] is None


NOWHERE = "00000000-0000-4000-8000-00000000dead"


@pytest.mark.parametrize(
    ("method", "path", "target", "status", "code", "message_part"),
    [
        ("POST", "nosuchnavigation", "leads({lead})", 404, "0x8006088a", "Resource not found for the segment"),
        ("POST", "name", "leads({lead})", 400, "0x8006088a", "'$ref' is invalid after the segment 'name'"),
        ("POST", "accountleads_association", f"leads({NOWHERE})", 404, "0x80040217", "Does Not Exist"),
        ("POST", "accountleads_association", "contacts({contact})", 400, "0x80060888", "takes rows of type"),
        ("PUT", "accountleads_association", "leads({lead})", 405, "0x80060888", "collection-valued"),
        ("POST", "primarycontactid", "contacts({contact})", 405, "0x80060888", "single-valued"),
        ("PUT", "primarycontactid", "leads({lead})", 400, "0x80060888", "takes rows of type"),
    ],
)
async def test_a_bad_link_is_refused_with_the_services_error(
    sandbox: Sandbox,
    http: httpx2.AsyncClient,
    method: str,
    path: str,
    target: str,
    status: int,
    code: str,
    message_part: str,
) -> None:
    account, lead = await first(http, sandbox, "accounts"), await first(http, sandbox, "leads")
    contact = await first(http, sandbox, "contacts")
    reference = target.format(lead=lead, contact=contact)
    response = await link(http, sandbox, f"/accounts({account})/{path}", reference, method=method)
    got_status, got_code, message = error_of(response)
    assert (got_status, got_code) == (status, code)
    assert message_part in message
    assert await rows(http, sandbox, "/accountleadscollection") == []


async def test_a_link_without_a_body_or_to_a_missing_row_is_refused(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    account, lead = await first(http, sandbox, "accounts"), await first(http, sandbox, "leads")
    no_body = await http.post(
        api(sandbox) + f"/accounts({account})/accountleads_association/$ref", json={}, headers=auth(sandbox)
    )
    assert error_of(no_body)[:2] == (400, "0x80060888")
    missing = await link(http, sandbox, f"/accounts({NOWHERE})/accountleads_association", f"leads({lead})")
    assert error_of(missing)[:2] == (404, "0x80040217")


async def test_linking_takes_append_and_append_to_on_rows_the_caller_may_touch(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    alices_account, bobs_lead = (
        await first(http, sandbox, "accounts", "alice"),
        await first(http, sandbox, "leads", "bob"),
    )
    alices_lead = await first(http, sandbox, "leads", "alice")
    path = f"/accounts({alices_account})/accountleads_association"
    foreign = await link(http, sandbox, path, f"leads({bobs_lead})", user="alice")
    status, code, message = error_of(foreign)
    assert (status, code) == (403, "0x80048306")
    assert "AppendAccess" in message and bobs_lead in message
    reader = await link(http, sandbox, path, f"leads({alices_lead})", user="carol")
    status, code, message = error_of(reader)
    assert (status, code) == (403, "0x80040220")
    assert "prvAppendAccount" in message
    assert await rows(http, sandbox, "/accountleadscollection") == []
    assert (await link(http, sandbox, path, f"leads({alices_lead})", user="alice")).status_code == 204


async def test_an_intersect_table_takes_no_direct_write(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    account, lead = await first(http, sandbox, "accounts"), await first(http, sandbox, "leads")
    response = await http.post(api(sandbox) + "/accountleadscollection", json={"name": "x"}, headers=auth(sandbox))
    assert error_of(response) == (
        400,
        "0x80040800",
        "The 'Create' method does not support entities of type 'accountleads'. "
        "MessageProcessorCache returned MessageProcessor.Empty.",
    )
    assert (
        await link(http, sandbox, f"/accounts({account})/accountleads_association", f"leads({lead})")
    ).status_code == 204


async def test_entity_definitions_list_the_n_to_n_relationships_and_intersect_tables(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    response = await http.get(
        api(sandbox) + "/EntityDefinitions(LogicalName='lead')",
        params={"$select": "LogicalName", "$expand": "ManyToManyRelationships"},
        headers=auth(sandbox),
    )
    (relationship,) = response.json()["ManyToManyRelationships"]
    assert {name: value for name, value in relationship.items() if name.startswith(("Entity", "Intersect"))} == {
        "Entity1LogicalName": "account",
        "Entity1IntersectAttribute": "accountid",
        "Entity1NavigationPropertyName": "accountleads_association",
        "Entity2LogicalName": "lead",
        "Entity2IntersectAttribute": "leadid",
        "Entity2NavigationPropertyName": "accountleads_association",
        "IntersectEntityName": "accountleads",
    }
    intersect = await http.get(
        api(sandbox) + "/EntityDefinitions(LogicalName='accountleads')",
        params={"$select": "EntitySetName,IsIntersect,OwnershipType,PrimaryIdAttribute"},
        headers=auth(sandbox),
    )
    body = intersect.json()
    assert (body["EntitySetName"], body["IsIntersect"], body["OwnershipType"], body["PrimaryIdAttribute"]) == (
        "accountleadscollection",
        True,
        "None",
        "accountleadid",
    )
