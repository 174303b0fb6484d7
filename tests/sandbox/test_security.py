"""Bearer tokens and record-level security over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx2
import pytest

from sandbox import Sandbox, SigningKey, find_user

from .support import ODATA_HEADERS, api, auth, error_of


def bearer(token: str) -> dict[str, str]:
    return {**ODATA_HEADERS, "Authorization": f"Bearer {token}"}


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["oid"] = str(find_user("admin").object_id)  # type: ignore[union-attr]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def foreign_token(sandbox: Sandbox) -> str:
    """A well-formed token for the right audience, signed by a key the sandbox does not know."""
    user = find_user("alice")
    assert user is not None
    key = SigningKey.load_or_create(sandbox.data_dir / "other")
    return key.issue_user_token(user, sandbox.environments["contoso"].url, "https://issuer.invalid")


async def test_a_request_without_token_gets_401_naming_the_authority(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    response = await http.get(api(sandbox) + "/accounts", headers=ODATA_HEADERS)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer authorization_uri=")
    assert f"resource_id={sandbox.environments['contoso'].url}/" in challenge


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda s: s.token("alice", lifetime=-120), "expired"),
        (lambda s: s.token("alice", "fabrikam"), "another resource"),
        (lambda s: tampered(s.token("alice")), "signature"),
        (lambda s: "not-a-jwt", "malformed"),
        (foreign_token, "signature"),
    ],
)
async def test_bad_tokens_get_401_with_the_reason(
    sandbox: Sandbox, http: httpx2.AsyncClient, make_token: Callable[[Sandbox], str], reason: str
) -> None:
    response = await http.get(api(sandbox) + "/accounts?$top=1", headers=bearer(make_token(sandbox)))
    status, _, message = error_of(response)
    assert status == 401
    assert reason in message
    assert "www-authenticate" in response.headers


async def test_a_user_outside_the_environment_is_refused(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.get(api(sandbox) + "/accounts?$top=1", headers=auth(sandbox, "erin"))
    status, _, message = error_of(response)
    assert status == 403
    assert "not a member" in message


async def test_a_salesperson_sees_only_their_own_rows(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    url = api(sandbox) + "/accounts?$select=_ownerid_value&$count=true"
    alice = (await http.get(url, headers=auth(sandbox, "alice"))).json()
    bob = (await http.get(url, headers=auth(sandbox, "bob"))).json()
    admin = (await http.get(url, headers=auth(sandbox, "admin"))).json()
    assert {row["_ownerid_value"] for row in alice["value"]} == {str(find_user("alice").system_user_id)}  # type: ignore[union-attr]
    assert {row["_ownerid_value"] for row in bob["value"]} == {str(find_user("bob").system_user_id)}  # type: ignore[union-attr]
    assert 0 < alice["@odata.count"] < admin["@odata.count"]
    assert alice["@odata.count"] + bob["@odata.count"] < admin["@odata.count"] + 1


async def test_reading_another_users_row_by_id_is_an_access_error(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    bobs = (await http.get(api(sandbox) + "/accounts?$select=name&$top=1", headers=auth(sandbox, "bob"))).json()[
        "value"
    ][0]
    response = await http.get(api(sandbox) + f"/accounts({bobs['accountid']})", headers=auth(sandbox, "alice"))
    status, code, message = error_of(response)
    assert (status, code) == (403, "0x80048306")
    assert "ReadAccess" in message


async def test_a_reader_reads_everything_but_cannot_write(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    everything = await http.get(api(sandbox) + "/accounts?$count=true&$top=1", headers=auth(sandbox, "carol"))
    assert everything.json()["@odata.count"] == 60
    created = await http.post(api(sandbox) + "/accounts", json={"name": "Not allowed"}, headers=auth(sandbox, "carol"))
    status, code, message = error_of(created)
    assert (status, code) == (403, "0x80040220")
    assert "prvCreateAccount" in message
    gone = await http.get(
        api(sandbox) + "/accounts?$count=true&$top=1&$filter=name eq 'Not allowed'", headers=auth(sandbox)
    )
    assert gone.json()["@odata.count"] == 0


async def test_a_salesperson_cannot_change_or_delete_another_users_row(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    bobs = (await http.get(api(sandbox) + "/accounts?$select=name&$top=1", headers=auth(sandbox, "bob"))).json()[
        "value"
    ][0]
    url = api(sandbox) + f"/accounts({bobs['accountid']})"
    update = await http.patch(url, json={"name": "Hijacked"}, headers=auth(sandbox, "alice", **{"If-Match": "*"}))
    assert error_of(update)[0] == 403
    delete = await http.delete(url, headers=auth(sandbox, "alice"))
    assert error_of(delete)[0] == 403
    after = await http.get(url + "?$select=name", headers=auth(sandbox, "bob"))
    assert after.json()["name"] == bobs["name"]


async def test_organization_owned_tables_are_readable_by_all_writable_by_admin(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    products = await http.get(api(sandbox) + "/products?$select=name", headers=auth(sandbox, "alice"))
    assert len(products.json()["value"]) == 12
    created = await http.post(
        api(sandbox) + "/products",
        json={"name": "Pen", "productnumber": "P-9"},
        headers=auth(sandbox, "alice"),
    )
    assert error_of(created)[:2] == (403, "0x80040220")
    by_admin = await http.post(
        api(sandbox) + "/products", json={"name": "Pen", "productnumber": "P-9"}, headers=auth(sandbox)
    )
    assert by_admin.status_code == 204
