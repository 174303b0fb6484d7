"""A model that tries: every way a denied table's rows, names or metadata could come back, and none does.

The server runs with `contact` denied. Each attack goes through the real MCP client; each must end in a tool error
or in a result that carries no contact's data, and the sandbox's request log must show that the service never saw
a request touching contacts. Hypothesis generates the variants (spellings, character references, attribute order,
whitespace, nesting) from fixed seeds, so a run is reproducible.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, types

from sandbox import Sandbox
from server import ConfigurationError, build_server, load_settings

from .support import error_text, server_for, settings_for, structured

T = TypeVar("T")
DENIED = {"denied_tables": "contact"}
# What a request touching contacts carries in its path or (decoded) query string.
TOUCHING_CONTACTS = re.compile(
    r"contacts|logicalname='contact'|name=.contact.|primarycontactid[/(]|\$expand=primarycontactid|"
    r"contact_customer_accounts|parentcustomerid_contact",
    re.IGNORECASE,
)


def generated(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """`count` values drawn by Hypothesis, the same ones on every run."""
    drawn: list[T] = []

    @settings(max_examples=count, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(value: T) -> None:
        drawn.append(value)

    draw()
    return drawn


async def contact_names(sandbox: Sandbox, http: httpx2.AsyncClient) -> set[str]:
    response = await http.get(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/contacts",
        params={"$select": "fullname,emailaddress1"},
        headers={"Authorization": f"Bearer {sandbox.token()}"},
    )
    return {
        value
        for row in response.json()["value"]
        for key, value in row.items()
        if key in ("fullname", "emailaddress1") and value
    }


def touching_contacts(sandbox: Sandbox) -> list[str]:
    requests = [f"{record.method} {record.path}?{record.query}" for record in sandbox.request_log.records]
    return [request for request in requests if TOUCHING_CONTACTS.search(request)]


def leaked(result: types.CallToolResult, names: set[str]) -> list[str]:
    text = json.dumps(result.structured_content or {}) + "".join(
        block.text for block in result.content if isinstance(block, types.TextContent)
    )
    return sorted(name for name in names if name in text)


async def attack_all(
    sandbox: Sandbox, http: httpx2.AsyncClient, calls: Sequence[tuple[str, dict[str, Any]]], *, must_fail: bool
) -> None:
    """Each call fails (or, if allowed to succeed, carries no contact data); the service saw no contact request."""
    names = await contact_names(sandbox, http)
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox, **DENIED)) as client:
        for tool, arguments in calls:
            result = await client.call_tool(tool, arguments)
            if must_fail:
                assert result.is_error, (tool, arguments, result.structured_content)
            assert not leaked(result, names), (tool, arguments)
    assert touching_contacts(sandbox) == []


# -- FetchXML --------------------------------------------------------------------------------------------------


def _fetch_spelling() -> st.SearchStrategy[str]:
    """`contact` as the FetchXML text may spell it: any case, entity set or display name, character references."""

    def referenced(name: str, picks: list[bool]) -> str:
        return "".join(f"&#{ord(c)};" if pick else c for c, pick in zip(name, picks, strict=False))

    plain = st.sampled_from(["contact", "Contact", "CONTACT", "contacts", "Contacts", " contact "])
    references = st.lists(st.booleans(), min_size=7, max_size=7).map(lambda picks: referenced("contact", picks))
    hexadecimal = st.just("&#x63;ontact")
    return st.one_of(plain, references, hexadecimal)


@st.composite
def fetch_attacks(draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    """An account query whose link-entity (maybe nested, maybe aliased first) or root entity reads contact."""
    name = draw(_fetch_spelling())
    quote = draw(st.sampled_from(["'", '"']))
    space = draw(st.sampled_from([" ", "  ", "\n", "\t "]))
    attributes = [
        f"name={quote}{name}{quote}",
        f"alias={quote}name{quote}",
        "from='contactid'",
        "to='primarycontactid'",
    ]
    order = draw(st.permutations(attributes))
    link = f"<link-entity{space}{space.join(order)}><attribute name='fullname'/></link-entity>"
    depth = draw(st.integers(0, 2))
    for _ in range(depth):  # nested inside an allowed link-entity
        link = f"<link-entity name='systemuser' from='systemuserid' to='owninguser'>{link}</link-entity>"
    where = draw(st.sampled_from(["entity", "root"]))
    if where == "root":
        return f"<fetch><entity{space}name={quote}{name}{quote}><attribute name='fullname'/></entity></fetch>"
    return f"<fetch><entity name='account'><attribute name='name'/>{link}</entity></fetch>"


async def test_fetchxml_that_reads_a_denied_table_is_refused_however_it_is_written(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    attacks = generated(fetch_attacks(), 60)
    calls = [("query_records", {"fetchxml": fetchxml}) for fetchxml in attacks]
    calls += [("query_records", {"table": "account", "fetchxml": fetchxml}) for fetchxml in attacks[:10]]
    await attack_all(sandbox, http, calls, must_fail=True)
    assert not any(record.query for record in sandbox.request_log.records if "fetchXml" in record.query)


async def test_the_fetchxml_sent_is_the_one_checked(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    """A character reference names a table to the parser; the text sent carries the resolved name."""
    fetchxml = "<fetch><entity name='&#97;ccount'><attribute name='name'/></entity></fetch>"
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox, **DENIED)) as client:
        rows = structured(await client.call_tool("query_records", {"fetchxml": fetchxml, "page_size": 3}))["rows"]
    assert len(rows) == 3
    sent = [record.query for record in sandbox.request_log.records if "fetchXml" in record.query]
    assert sent and all('name="account"' in query for query in sent)


# -- OData: expand, filter paths, lambdas, query functions, orderby ------------------------------------------------

NAVIGATION_ATTACKS: list[dict[str, Any]] = [
    {"table": "account", "expand": ["primarycontactid"]},
    {"table": "account", "expand": ["primarycontactid(fullname)"]},
    {"table": "account", "expand": [" primarycontactid ( fullname ) "]},
    {"table": "account", "expand": ["contact_customer_accounts"]},
    {"table": "account", "expand": ["primarycontactid($select=fullname)"]},
    {"table": "account", "filter": "primarycontactid/fullname eq 'Yvonne McKay'"},
    {"table": "account", "filter": "startswith(primarycontactid/fullname,'Y')"},
    {"table": "account", "filter": "contact_customer_accounts/any(c: c/fullname eq 'x')"},
    {"table": "account", "filter": "contact_customer_accounts/any(c:c/fullname ne null)"},
    {"table": "account", "filter": "contact_customer_accounts/all(x: x/statecode eq 0)"},
    {"table": "account", "filter": "contact_customer_accounts/any()"},
    {"table": "account", "filter": "name ne 'a' or (contact_customer_accounts/any(c: c/fullname eq 'x'))"},
    {
        "table": "account",
        "filter": "Microsoft.Dynamics.CRM.In(PropertyName='primarycontactid/fullname',PropertyValues=['x'])",
    },
    {"table": "account", "filter": "ownerid/systemuserid ne null and primarycontactid/contactid ne null"},
    {"table": "account", "filter": "it/primarycontactid/fullname eq 'x'"},
    {"table": "account", "orderby": "primarycontactid/fullname"},
    {"table": "account", "filter": "name ne 'x'&$expand=primarycontactid($select=fullname)"},
    {"table": "account", "filter": "name ne 'x'#&$expand=primarycontactid"},
    {"table": "account", "apply": "groupby((primarycontactid/fullname))"},
    {"table": "account", "apply": "filter(contact_customer_accounts/any(c:c/fullname ne null))/aggregate($count as n)"},
    {"table": "account", "select": ["primarycontactid/fullname"]},
    {"table": "opportunity", "filter": "parentcontactid/fullname eq 'x'"},
    {"table": "opportunity", "expand": ["parentcontactid"]},
    {"table": "contact"},
    {"table": "contacts"},
    {"table": "Contact", "select": ["fullname"]},
]


async def test_navigation_to_a_denied_table_is_refused(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    calls = [("query_records", arguments) for arguments in NAVIGATION_ATTACKS]
    calls += [
        ("describe_table", {"table": "contact"}),
        ("describe_table", {"table": "Contacts", "columns": ["fullname"]}),
        ("get_record", {"table": "contact", "id": "00000000-0000-0000-0000-000000000001"}),
    ]
    await attack_all(sandbox, http, calls, must_fail=True)


@st.composite
def lambda_attacks(draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    """A filter that reaches contacts through a lambda, with any variable name, nesting and padding."""
    variable = draw(st.sampled_from(["c", "x", "name", "account", "it", "a1"]))
    operator = draw(st.sampled_from(["any", "all"]))
    column = draw(st.sampled_from(["fullname", "emailaddress1", "statecode"]))
    padding = draw(st.sampled_from(["", " ", "  "]))
    inner = f"{variable}/{column} ne null"
    text = f"contact_customer_accounts/{operator}({variable}:{padding}{inner})"
    if draw(st.booleans()):  # hidden behind an allowed lambda first
        text = f"opportunity_customer_accounts/any(o: o/name ne null) and {text}"
    return draw(st.sampled_from([text, f"name ne 'x' and ({text})", f"not {text}"]))


async def test_lambda_filters_over_a_denied_table_are_refused(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    calls = [("query_records", {"table": "account", "filter": text}) for text in generated(lambda_attacks(), 40)]
    await attack_all(sandbox, http, calls, must_fail=True)


async def test_navigation_to_allowed_tables_is_sent(sandbox: Sandbox) -> None:
    """The policy lets paths through allowed tables reach the service (whose answer is its own)."""
    filters = ["owninguser/fullname ne null", "opportunity_customer_accounts/any(o: o/name ne null)"]
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox, **DENIED)) as client:
        for text in filters:
            result = await client.call_tool("query_records", {"table": "account", "select": ["name"], "filter": text})
            assert "not available" not in json.dumps(result.content[0].model_dump())
    sent = [record.query for record in sandbox.request_log.records if record.path.endswith("/accounts")]
    assert all(any(text in query for query in sent) for text in filters)


# -- Lookups: the name of a denied row is its data ------------------------------------------------------------


async def test_lookups_to_a_denied_table_carry_no_name(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    names = await contact_names(sandbox, http)
    async with Client(server_for(sandbox, **DENIED)) as client:
        rows = structured(
            await client.call_tool(
                "query_records", {"table": "account", "select": ["name", "primarycontactid"], "page_size": 20}
            )
        )["rows"]
        fetched = structured(
            await client.call_tool(
                "query_records",
                {"fetchxml": "<fetch><entity name='account'><attribute name='primarycontactid'/></entity></fetch>"},
            )
        )["rows"]
        one = structured(await client.call_tool("get_record", {"table": "account", "id": rows[0]["accountid"]}))["row"]
        opportunity = structured(
            await client.call_tool("query_records", {"table": "opportunity", "select": ["customerid", "name"]})
        )["rows"]
    lookups = [row["primarycontactid"] for row in rows + fetched + [one] if row.get("primarycontactid")]
    assert lookups and all(set(lookup) == {"id", "table"} and lookup["table"] == "contact" for lookup in lookups)
    customers = [row["customerid"] for row in opportunity if row.get("customerid")]
    assert all("name" not in customer for customer in customers if customer.get("table") == "contact")
    assert any("name" in customer for customer in customers if customer.get("table") == "account")
    assert not any(name in json.dumps([rows, fetched, one, opportunity]) for name in names)


async def test_describe_table_hides_relationships_to_a_denied_table(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, **DENIED)) as client:
        account = structured(
            await client.call_tool("describe_table", {"table": "account", "include_relationships": True})
        )
        listed = structured(await client.call_tool("list_tables", {"search": "contact", "include_system": True}))
    assert "contact" not in json.dumps(account["relationships"])
    assert account["columns"]["primarycontactid"].startswith("lookup→(not available)")
    assert listed["tables"] == []


# -- Writes that bind to a denied table ---------------------------------------------------------------------


async def test_writes_that_bind_to_a_denied_table_send_nothing(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    contact = "00000000-0000-0000-0000-000000000001"
    account = (
        await http.get(
            f"{sandbox.environments['contoso'].url}/api/data/v9.2/accounts",
            params={"$select": "accountid", "$top": "1"},
            headers={"Authorization": f"Bearer {sandbox.token()}"},
        )
    ).json()["value"][0]["accountid"]
    binds = [
        {"primarycontactid": {"table": "contact", "id": contact}},
        {"primarycontactid": {"table": "Contacts", "id": contact}},
        {"primarycontactid": contact},
    ]
    calls: list[tuple[str, dict[str, Any]]] = []
    for values in binds:
        calls.append(("create_record", {"table": "account", "values": {"name": "Injected", **values}}))
        calls.append(("update_record", {"table": "account", "id": account, "values": values}))
        calls.append(("upsert_record", {"table": "account", "id": account, "values": values}))
    calls.append(("create_record", {"table": "lead", "values": {"lastname": "x", "parentcontactid": contact}}))
    calls.append(("create_record", {"table": "contact", "values": {"lastname": "x"}}))
    calls.append(("delete_record", {"table": "contact", "id": contact, "confirm": True}))
    sandbox.request_log.records.clear()
    await attack_all(sandbox, http, calls, must_fail=True)
    assert [record for record in sandbox.request_log.records if record.method != "GET"] == []


# -- Cursors ----------------------------------------------------------------------------------------------------


async def test_a_cursor_edited_by_one_character_is_refused(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, **DENIED)) as client:
        first = structured(
            await client.call_tool("query_records", {"table": "account", "select": ["name"], "page_size": 5})
        )
        cursor = first["cursor"]
        edits = {cursor[:i] + ("A" if cursor[i] != "A" else "B") + cursor[i + 1 :] for i in range(len(cursor))}
        edits |= {cursor[:-1], cursor + "A", cursor[1:], "", " ", "e30", cursor.upper()}
        messages = [error_text(await client.call_tool("query_records", {"cursor": edit})) for edit in edits if edit]
        assert all("cursor" in message for message in messages)
        second = structured(await client.call_tool("query_records", {"cursor": cursor}))
    assert len(second["rows"]) == 5 and not {row["accountid"] for row in second["rows"]} & {
        row["accountid"] for row in first["rows"]
    }


async def test_a_cursor_is_bound_to_its_query_tool_and_server(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, **DENIED)) as client:
        cursor = structured(
            await client.call_tool("query_records", {"table": "account", "select": ["name"], "page_size": 5})
        )["cursor"]
        table_cursor = structured(await client.call_tool("list_tables", {"page_size": 2}))["cursor"]
        other_table = error_text(await client.call_tool("query_records", {"cursor": cursor, "table": "contact"}))
        other_filter = error_text(await client.call_tool("query_records", {"cursor": cursor, "filter": "name eq 'x'"}))
        with_fetch = error_text(
            await client.call_tool(
                "query_records", {"cursor": cursor, "fetchxml": "<fetch><entity name='contact'/></fetch>"}
            )
        )
        other_tool = error_text(await client.call_tool("query_records", {"cursor": table_cursor}))
        into_list = error_text(await client.call_tool("list_tables", {"cursor": cursor}))
        same = structured(
            await client.call_tool(
                "query_records", {"cursor": cursor, "table": "accounts", "select": "name", "page_size": 5}
            )
        )
    assert "table" in other_table and "asks for another" in other_table
    assert "filter" in other_filter
    assert "fetchxml" in with_fetch
    assert "not valid" in other_tool and "not valid" in into_list
    assert len(same["rows"]) == 5
    async with Client(server_for(sandbox, **DENIED)) as another_server:
        elsewhere = error_text(await another_server.call_tool("query_records", {"cursor": cursor}))
    assert "not valid" in elsewhere


async def test_cursors_stay_short_for_odata_and_fetchxml(sandbox: Sandbox) -> None:
    long_filter = " or ".join(f"name eq 'Account number {n} with a long name'" for n in range(40))
    fetchxml = (
        "<fetch><entity name='account'><attribute name='name'/><attribute name='revenue'/>"
        "<link-entity name='systemuser' from='systemuserid' to='owninguser' alias='owner'>"
        "<attribute name='fullname'/></link-entity><order attribute='name'/></entity></fetch>"
    )
    queries: list[dict[str, Any]] = [
        {"table": "account", "select": ["name"], "page_size": 5},
        {"table": "account", "select": ["name"], "filter": f"name ne 'x' or ({long_filter})", "page_size": 5},
        {"fetchxml": fetchxml, "page_size": 5},
        {"table": "account", "select": ["name"], "top": 12, "page_size": 5},
    ]
    async with Client(server_for(sandbox, **DENIED)) as client:
        for query in queries:
            cursor = structured(await client.call_tool("query_records", query))["cursor"]
            assert cursor is not None and len(cursor) < 200, (query, cursor)
            following = structured(await client.call_tool("query_records", {"cursor": cursor}))
            assert following["rows"]
            cursor = following["cursor"]
            assert cursor is None or len(cursor) < 200


# -- Configuration ----------------------------------------------------------------------------------------------


async def test_a_deny_list_names_tables_as_the_table_argument_does(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, denied_tables="contacts, Lead")) as client:
        contact = error_text(await client.call_tool("query_records", {"table": "contact"}))
        lead = error_text(await client.call_tool("describe_table", {"table": "leads"}))
    assert "not available" in contact and "not available" in lead


async def test_a_deny_list_with_a_typo_stops_the_server_naming_the_closest_table(sandbox: Sandbox) -> None:
    with pytest.raises(ConfigurationError) as raised:
        async with Client(build_server(settings_for(sandbox, denied_tables="contcat"))):
            pass
    assert "contcat" in str(raised.value) and "'contact'" in str(raised.value)


SHARED_KEY = {"cursor_key": "replicas-share-this-key-of-40-characters!"}


async def test_replicas_sharing_a_key_resume_each_others_cursors(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, **SHARED_KEY)) as one, Client(server_for(sandbox, **SHARED_KEY)) as two:
        first = structured(
            await one.call_tool("query_records", {"table": "account", "select": ["name"], "page_size": 5})
        )
        second = structured(await two.call_tool("query_records", {"cursor": first["cursor"]}))
        third = structured(await one.call_tool("query_records", {"cursor": second["cursor"]}))
    pages = [{row["accountid"] for row in page["rows"]} for page in (first, second, third)]
    assert all(len(page) == 5 for page in pages) and len(set().union(*pages)) == 15


async def test_the_policy_is_checked_again_on_every_resumed_page(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    """A cursor made where contacts were allowed does not read them where they are denied, key shared or not."""
    query = {"table": "account", "select": ["name"], "expand": ["primarycontactid(fullname)"], "page_size": 2}
    async with Client(server_for(sandbox, **SHARED_KEY)) as open_server:
        cursor = structured(await open_server.call_tool("query_records", query))["cursor"]
    names = await contact_names(sandbox, http)
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox, **SHARED_KEY, **DENIED)) as guarded:
        refused = await guarded.call_tool("query_records", {"cursor": cursor})
    assert "'contact' is not available" in error_text(refused)
    assert not leaked(refused, names) and touching_contacts(sandbox) == []


async def test_a_cursor_is_bound_to_its_environment(sandbox: Sandbox) -> None:
    environments = [
        {"name": name, "url": sandbox.environments[name].url, "access_token": sandbox.token("admin", name)}
        for name in ("contoso", "fabrikam")
    ]
    async with Client(build_server(load_settings(None, environments=environments))) as client:
        cursor = structured(
            await client.call_tool(
                "query_records", {"environment": "contoso", "table": "account", "select": ["name"], "page_size": 2}
            )
        )["cursor"]
        elsewhere = error_text(await client.call_tool("query_records", {"cursor": cursor, "environment": "fabrikam"}))
        same = structured(await client.call_tool("query_records", {"cursor": cursor, "environment": "contoso"}))
    assert "environment" in elsewhere and "asks for another" in elsewhere
    assert len(same["rows"]) == 2


async def test_aggregates_grouped_by_a_lookup_to_a_denied_table_carry_no_name(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    fetchxml = (
        "<fetch aggregate='true'><entity name='account'><attribute name='primarycontactid' groupby='true' alias='pc'/>"
        "<attribute name='accountid' aggregate='count' alias='n'/></entity></fetch>"
    )
    names = await contact_names(sandbox, http)
    async with Client(server_for(sandbox, **DENIED)) as client:
        fetched = await client.call_tool("query_records", {"fetchxml": fetchxml})
        applied = await client.call_tool(
            "query_records", {"table": "account", "apply": "groupby((primarycontactid),aggregate($count as n))"}
        )
    for result in (fetched, applied):
        rows = structured(result)["rows"]
        lookups = [row.get("pc") or row.get("primarycontactid") for row in rows]
        assert any(lookups) and all(set(lookup) == {"id", "table"} for lookup in lookups if lookup)
        assert not leaked(result, names)
