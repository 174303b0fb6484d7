"""Change tracking over real HTTP, as "Use change tracking to synchronize data with external systems" shows it:
a tracked read, its delta link, the changes since, paging, refusals, expiry and a restart in between."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from sandbox import Sandbox

from .support import api, auth, error_of

TRACK = "odata.track-changes"
NOW = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)
# The page's token, `919042%2108%2f22%2f2017%2008%3a10%3a44`: a row version and a UTC time, escaped in lower case.
TOKEN = re.compile(r"\$deltatoken=\d+%21\d\d%2f\d\d%2f\d{4}%20\d\d%3a\d\d%3a\d\d$")


def stopped_at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


async def read(
    sandbox: Sandbox, http: httpx2.AsyncClient, url: str, user: str = "admin", **headers: str
) -> httpx2.Response:
    return await http.get(url if "://" in url else f"{api(sandbox)}/{url}", headers=auth(sandbox, user, **headers))


async def every_page(
    sandbox: Sandbox, http: httpx2.AsyncClient, url: str, page_size: int, *, track: bool = False
) -> tuple[list[list[dict[str, Any]]], str]:
    """Each page's rows of a change read, following next links, and the delta link of the last page."""
    pages: list[list[dict[str, Any]]] = []
    prefer = f"{TRACK},odata.maxpagesize={page_size}" if track else f"odata.maxpagesize={page_size}"
    response = await read(sandbox, http, url, Prefer=prefer)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["value"])
        if "@odata.nextLink" not in body:
            return pages, body["@odata.deltaLink"]
        assert "@odata.deltaLink" not in body  # OData 4.0: the delta link comes on the last page only
        response = await read(sandbox, http, body["@odata.nextLink"], Prefer=f"odata.maxpagesize={page_size}")


async def delta_link(sandbox: Sandbox, http: httpx2.AsyncClient, user: str = "admin") -> str:
    response = await read(sandbox, http, "accounts?$select=name", user, Prefer=TRACK)
    assert response.status_code == 200, response.text
    link: str = response.json()["@odata.deltaLink"]
    return link


async def create(sandbox: Sandbox, http: httpx2.AsyncClient, name: str, user: str = "admin") -> str:
    response = await http.post(f"{api(sandbox)}/accounts", json={"name": name}, headers=auth(sandbox, user))
    assert response.status_code == 204, response.text
    return response.headers["odata-entityid"].rsplit("(", 1)[1].rstrip(")")


async def rename(sandbox: Sandbox, http: httpx2.AsyncClient, row_id: str, name: str, user: str = "admin") -> None:
    response = await http.patch(f"{api(sandbox)}/accounts({row_id})", json={"name": name}, headers=auth(sandbox, user))
    assert response.status_code == 204, response.text


async def delete(sandbox: Sandbox, http: httpx2.AsyncClient, row_id: str) -> None:
    response = await http.delete(f"{api(sandbox)}/accounts({row_id})", headers=auth(sandbox))
    assert response.status_code == 204, response.text


async def account_ids(sandbox: Sandbox, http: httpx2.AsyncClient, count: int, user: str = "admin") -> list[str]:
    response = await read(sandbox, http, f"accounts?$select=name&$orderby=name&$top={count}", user)
    return [row["accountid"] for row in response.json()["value"]]


def deleted_ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows if row.get("reason") == "deleted"]


def written_names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["name"] for row in rows if "reason" not in row]


async def test_a_tracked_read_answers_every_row_and_a_delta_link(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await read(sandbox, http, "accounts?$select=name,telephone1", Prefer=TRACK)
    assert response.status_code == 200, response.text
    assert response.headers["preference-applied"] == TRACK
    body = response.json()
    assert body["@odata.context"] == f"{api(sandbox)}/$metadata#accounts(name,telephone1)"
    assert len(body["value"]) == 60
    assert {"@odata.etag", "name", "telephone1", "accountid"} <= set(body["value"][0])
    assert body["@odata.deltaLink"].startswith(f"{api(sandbox)}/accounts?$select=name,telephone1&$deltatoken=")
    assert TOKEN.search(body["@odata.deltaLink"])


async def test_the_delta_link_answers_what_was_written_then_what_was_deleted(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    link = await delta_link(sandbox, http)
    renamed, removed = await account_ids(sandbox, http, 2)
    await create(sandbox, http, "Fresh Account")
    await rename(sandbox, http, renamed, "Renamed Account")
    await delete(sandbox, http, removed)
    fleeting = await create(sandbox, http, "Fleeting Account")
    await delete(sandbox, http, fleeting)  # created and deleted between two reads: still reported as deleted

    response = await read(sandbox, http, link)
    assert response.status_code == 200, response.text
    assert "preference-applied" not in response.headers
    body = response.json()
    assert body["@odata.context"] == f"{api(sandbox)}/$metadata#accounts(name)/$delta"
    rows = body["value"]
    assert written_names(rows) == ["Fresh Account", "Renamed Account"]
    assert all("@odata.etag" in row for row in rows[:2])
    assert rows[2:] == [
        {"@odata.context": f"{api(sandbox)}/$metadata#accounts/$deletedEntity", "id": row_id, "reason": "deleted"}
        for row_id in (removed, fleeting)
    ]
    assert TOKEN.search(body["@odata.deltaLink"])

    again = (await read(sandbox, http, body["@odata.deltaLink"])).json()
    assert again["value"] == []  # nothing changed since the newer link


async def test_count_with_a_delta_token_is_the_number_of_changes(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    link = await delta_link(sandbox, http)
    token = link.split("$deltatoken=", 1)[1]
    (removed,) = await account_ids(sandbox, http, 1)
    await create(sandbox, http, "Counted Account")
    await delete(sandbox, http, removed)
    response = await read(sandbox, http, f"accounts/$count?$deltatoken={token}")
    assert response.status_code == 200, response.text
    assert response.text == "2"


async def test_a_delete_inside_a_batch_is_a_change_too(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    link = await delta_link(sandbox, http)
    (removed,) = await account_ids(sandbox, http, 1)
    part = (
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"DELETE /api/data/v9.2/accounts({removed}) HTTP/1.1\r\n\r\n"
    )
    response = await http.post(
        f"{api(sandbox)}/$batch",
        content=f"--batch_A\r\n{part}\r\n--batch_A--\r\n".encode(),
        headers=auth(sandbox, **{"Content-Type": "multipart/mixed; boundary=batch_A"}),
    )
    assert response.status_code == 200, response.text
    assert deleted_ids((await read(sandbox, http, link)).json()["value"]) == [removed]


async def test_changes_page_with_maxpagesize_and_the_delta_link_comes_last(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    first = await read(sandbox, http, "accounts?$select=name", Prefer=f"{TRACK},odata.maxpagesize=25")
    assert set(first.headers["preference-applied"].split(",")) == {TRACK, "odata.maxpagesize=25"}
    pages, link = await every_page(sandbox, http, "accounts?$select=name", 25, track=True)
    assert [len(page) for page in pages] == [25, 25, 10]
    assert len({row["accountid"] for page in pages for row in page}) == 60

    removed = await account_ids(sandbox, http, 2)
    for name in ("Paged 1", "Paged 2", "Paged 3"):
        await create(sandbox, http, name)
    for row_id in removed:
        await delete(sandbox, http, row_id)
    pages, _ = await every_page(sandbox, http, link, 2)
    assert [len(page) for page in pages] == [2, 2, 1]
    rows = [row for page in pages for row in page]
    assert written_names(rows) == ["Paged 1", "Paged 2", "Paged 3"]
    assert deleted_ids(rows) == removed


async def test_a_row_changed_while_a_client_pages_comes_in_the_next_delta(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    first = (await read(sandbox, http, "accounts?$select=name", Prefer=f"{TRACK},odata.maxpagesize=30")).json()
    seen = {row["accountid"] for row in first["value"]}
    unseen = next(row_id for row_id in await account_ids(sandbox, http, 60) if row_id not in seen)
    await rename(sandbox, http, unseen, "Renamed While Paging")
    following = await read(sandbox, http, first["@odata.nextLink"], Prefer="odata.maxpagesize=30")
    # OData 4.0: Preference-Applied names odata.track-changes on the first page only.
    assert following.headers["preference-applied"] == "odata.maxpagesize=30"
    rest = following.json()
    rows = first["value"] + rest["value"]
    assert len({row["accountid"] for row in rows}) == len(rows)  # nothing twice
    delta = (await read(sandbox, http, rest["@odata.deltaLink"])).json()
    assert written_names(delta["value"]) == ["Renamed While Paging"]


@pytest.mark.parametrize(
    ("option", "name"),
    [
        ("$filter=name eq 'x'", "$filter"),
        ("$orderby=name", "$orderby"),
        ("$expand=primarycontactid($select=fullname)", "$expand"),
        ("$top=2", "$top"),
    ],
)
async def test_query_options_change_tracking_does_not_take_are_refused(
    sandbox: Sandbox, http: httpx2.AsyncClient, option: str, name: str
) -> None:
    response = await read(sandbox, http, f"accounts?$select=name&{option}", Prefer=TRACK)
    assert error_of(response) == (
        400,
        "0x80060888",
        f'The "{name}" query parameter isn\'t supported when Change Tracking is enabled.',
    )


async def test_a_table_without_change_tracking_is_refused(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    listed = await read(sandbox, http, "EntityDefinitions?$select=LogicalName&$filter=ChangeTrackingEnabled eq false")
    assert "cr8a1_project" in {table["LogicalName"] for table in listed.json()["value"]}
    account = await read(sandbox, http, "EntityDefinitions(LogicalName='account')?$select=ChangeTrackingEnabled")
    assert account.json()["ChangeTrackingEnabled"] is True

    response = await read(sandbox, http, "cr8a1_projects?$select=cr8a1_name", Prefer=TRACK)
    assert error_of(response) == (400, "0x80072491", "Entity cr8a1_project isn't enabled for change tracking.")


async def test_an_expired_delta_link_asks_for_a_full_sync(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    environment = sandbox.environments["contoso"]
    environment.clock = stopped_at(NOW)
    link = await delta_link(sandbox, http)
    environment.clock = stopped_at(NOW + timedelta(days=6))
    assert (await read(sandbox, http, link)).status_code == 200

    environment.clock = stopped_at(NOW + timedelta(days=8))  # past the default ExpireChangeTrackingInDays, 7
    assert error_of(await read(sandbox, http, link)) == (
        400,
        "0x80044352",
        "Version stamp associated with the client has expired. Please perform a full sync.",
    )
    environment.expire_change_tracking_in_days = 30  # an organization that keeps changes longer
    assert (await read(sandbox, http, link)).status_code == 200


async def test_a_delta_link_outlives_a_restart_of_the_service(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    link = await delta_link(sandbox, http)
    renamed, removed = await account_ids(sandbox, http, 2)
    await rename(sandbox, http, renamed, "Renamed Before Restart")
    await delete(sandbox, http, removed)

    await sandbox.stop()
    await sandbox.start()
    body = (await read(sandbox, http, link)).json()
    assert written_names(body["value"]) == ["Renamed Before Restart"]
    assert deleted_ids(body["value"]) == [removed]


async def test_only_a_user_who_reads_every_row_tracks_changes(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    """ "The calling user must have organization level read access to the table." A salesperson reads only their own
    accounts, so is refused, and sees no change of anyone else's; a reader sees them all."""
    carols = await delta_link(sandbox, http, user="carol")
    (alices,) = await account_ids(sandbox, http, 1, user="alice")
    await rename(sandbox, http, alices, "Renamed By Alice", user="alice")

    refused = await read(sandbox, http, "accounts?$select=name", "bob", Prefer=TRACK)
    status, code, message = error_of(refused)
    assert (status, code) == (403, "0x80040220")
    assert "organization-level read access" in message
    assert written_names((await read(sandbox, http, carols, "carol")).json()["value"]) == ["Renamed By Alice"]
    products = await read(sandbox, http, "products?$select=name", "bob", Prefer=TRACK)
    assert products.status_code == 200  # organization-owned: every salesperson reads every product
