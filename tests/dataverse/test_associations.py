"""The client's links over real HTTP: URLs it builds, writes a read-only client refuses, retries of unclear links."""

from __future__ import annotations

import httpx2
import pytest

from dataverse import (
    NOTHING_WRITTEN,
    DataverseClient,
    DataverseError,
    InvalidQuery,
    ODataQuery,
    RetryPolicy,
    WriteRefused,
    associate,
    disassociate,
    is_associated,
    navigations,
)
from sandbox import Fault, Sandbox

from .support import RotatingTokens, instant_retries


def client_for(
    sandbox: Sandbox, http: httpx2.AsyncClient, *, retry: RetryPolicy | None = None, read_only: bool = False
) -> DataverseClient:
    url = sandbox.environments["contoso"].url
    return DataverseClient(http, url, RotatingTokens([sandbox.token()]), retry=retry, read_only=read_only)


async def first_id(client: DataverseClient, table: str, primary_id: str) -> str:
    async for page in client.query(table, ODataQuery(select=[primary_id], top=1)):
        return str(page.rows[0][primary_id])
    raise AssertionError(f"the sandbox has {table} rows")


def writes(sandbox: Sandbox) -> list[str]:
    return [f"{record.method} {record.path}" for record in sandbox.request_log.records if record.method != "GET"]


async def test_the_navigation_properties_of_a_table_say_how_they_link(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = await client_for(sandbox, http).table("account")
    found = {link.name: (link.kind, link.target_table, link.relationship) for link in navigations(account)}
    assert found["primarycontactid"] == ("many_to_one", "contact", "account_primary_contact")
    assert found["contact_customer_accounts"] == ("one_to_many", "contact", "contact_customer_accounts")
    assert found["accountleads_association"] == ("many_to_many", "lead", "accountleads_association")
    assert account.navigation_target("accountleads_association") == "lead"


async def test_links_are_made_checked_and_removed_by_alternate_key_too(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    client = client_for(sandbox, http)
    lead = await first_id(client, "lead", "leadid")
    account = await client.get("account", {"accountnumber": "A-1003"}, select=["accountid"])
    by_key = {"accountnumber": "A-1003"}
    await associate(client, "account", by_key, "accountleads_association", "lead", lead)
    assert await is_associated(client, "accounts", account["accountid"], "accountleads_association", "lead", lead)
    assert await is_associated(client, "lead", lead, "accountleads_association", "account", account["accountid"])
    await disassociate(client, "account", by_key, "accountleads_association", "lead", lead)
    assert not await is_associated(client, "account", by_key, "accountleads_association", "lead", lead)
    assert writes(sandbox) == [
        "POST /api/data/v9.2/accounts(accountnumber='A-1003')/accountleads_association/$ref",
        f"DELETE /api/data/v9.2/accounts(accountnumber='A-1003')/accountleads_association({lead})/$ref",
    ]


async def test_a_single_valued_link_is_put_and_deleted(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    client = client_for(sandbox, http)
    contact, account = await first_id(client, "contact", "contactid"), await first_id(client, "account", "accountid")
    await associate(client, "contact", contact, "parentcustomerid_account", "account", account)
    assert await is_associated(client, "contact", contact, "parentcustomerid_account", "account", account)
    await disassociate(client, "contact", contact, "parentcustomerid_account")
    assert not await is_associated(client, "contact", contact, "parentcustomerid_account", "account", account)
    assert [line.split()[0] for line in writes(sandbox)] == ["PUT", "DELETE"]


@pytest.mark.parametrize(
    ("navigation", "target_table", "message"),
    [
        ("accountleads_association/../../contacts", "lead", "is not a navigation property of account"),
        ("accountleads_association", "contact", "reaches lead rows, not contact rows"),
    ],
)
async def test_what_is_not_a_link_of_the_table_is_refused_before_anything_is_sent(
    sandbox: Sandbox, http: httpx2.AsyncClient, navigation: str, target_table: str, message: str
) -> None:
    client = client_for(sandbox, http)
    account = await first_id(client, "account", "accountid")
    with pytest.raises(InvalidQuery, match=message) as refused:
        await associate(client, "account", account, navigation, target_table, account)
    assert NOTHING_WRITTEN in str(refused.value)
    assert writes(sandbox) == []


async def test_a_read_only_client_links_nothing(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    client = client_for(sandbox, http, read_only=True)
    account, lead = await first_id(client, "account", "accountid"), await first_id(client, "lead", "leadid")
    for attempt in (
        associate(client, "account", account, "accountleads_association", "lead", lead),
        disassociate(client, "account", account, "accountleads_association", "lead", lead),
        disassociate(client, "account", account, "primarycontactid"),
    ):
        with pytest.raises(WriteRefused) as refused:
            await attempt
        assert NOTHING_WRITTEN in str(refused.value) and not refused.value.may_have_written
    assert writes(sandbox) == []


async def test_a_link_whose_answer_is_lost_every_time_may_have_been_made(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, _ = instant_retries(max_attempts=3)
    client = client_for(sandbox, http, retry=retry)
    account, lead = await first_id(client, "account", "accountid"), await first_id(client, "lead", "leadid")
    sandbox.faults.add(Fault(kind="drop", count=3, method="DELETE"))  # never reaches the service
    with pytest.raises(DataverseError) as failed:
        await disassociate(client, "account", account, "accountleads_association", "lead", lead)
    assert failed.value.may_have_written
    assert "may or may not have been removed; removing it again is safe" in str(failed.value)
    sandbox.faults.clear()
    sandbox.faults.add(
        Fault(kind="drop_after", count=1, method="POST")
    )  # made, never answered: the repeat is a duplicate
    await associate(client, "account", account, "accountleads_association", "lead", lead)
    assert await is_associated(client, "account", account, "accountleads_association", "lead", lead)
