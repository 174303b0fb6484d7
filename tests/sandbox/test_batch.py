"""`$batch` over real HTTP: bodies written by hand as "Execute batch operations using the Web API" shows them."""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import dataclass
from email.message import Message
from typing import Any

import httpx2
import pytest

from sandbox import Fault, Sandbox

from .support import api, auth, error_of

BATCH = "batch_AAA123"
CHANGE_SET = "changeset_BBB456"
ALICE = "b0000000-0000-4000-8000-000000000002"


def request_part(
    method: str,
    url: str,
    body: Any = None,
    *,
    content_id: str | None = None,
    headers: tuple[str, ...] = (),
) -> str:
    """One `application/http` part, as the page's examples write them."""
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    lines += [*headers, ""]
    if body is not None:
        lines.append(json.dumps(body))
    return "\r\n".join(lines)


def change_set(*parts: str, boundary: str = CHANGE_SET) -> str:
    inner = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts)
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{inner}--{boundary}--\r\n"


def batch_body(*items: str) -> bytes:
    return ("".join(f"--{BATCH}\r\n{item}\r\n" for item in items) + f"--{BATCH}--\r\n").encode()


@dataclass
class Answer:
    """One `application/http` part of a batch response."""

    status: int
    headers: dict[str, str]
    body: str
    content_id: str | None
    in_change_set: bool

    def json(self) -> Any:
        return json.loads(self.body)


def answers(response: httpx2.Response) -> list[Answer]:
    """The parts of a batch response, in order, change set parts flattened, read with the standard library."""
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/mixed; boundary=batchresponse_"), content_type
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + response.content, policy=email.policy.HTTP
    )
    found: list[Answer] = []

    def walk(part: Message, in_change_set: bool) -> None:
        if part.is_multipart():
            for inner in part.get_payload():
                assert isinstance(inner, Message)
                walk(inner, in_change_set or part is not message)
            return
        assert part["Content-Type"] == "application/http"
        assert part["Content-Transfer-Encoding"] == "binary"
        text = part.get_payload(decode=False)
        assert isinstance(text, str)
        head, _, body = text.replace("\r\n", "\n").partition("\n\n")
        status_line, *header_lines = head.split("\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
        found.append(Answer(int(status_line.split()[1]), headers, body.strip(), part["Content-ID"], in_change_set))

    walk(message, False)
    return found


async def send(
    sandbox: Sandbox, http: httpx2.AsyncClient, body: bytes, user: str = "admin", **headers: str
) -> httpx2.Response:
    request_headers = {**auth(sandbox, user, **headers), "Content-Type": f"multipart/mixed; boundary={BATCH}"}
    return await http.post(api(sandbox) + "/$batch", content=body, headers=request_headers)


async def names(http: httpx2.AsyncClient, sandbox: Sandbox, entity_set: str, prefix: str) -> list[str]:
    response = await http.get(
        api(sandbox) + f"/{entity_set}?$select=name&$filter=startswith(name,'{prefix}')&$orderby=name",
        headers=auth(sandbox),
    )
    assert response.status_code == 200, response.text
    return [row["name"] for row in response.json()["value"]]


async def test_a_change_set_writes_every_row_and_content_ids_name_rows_written_before(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    body = batch_body(
        change_set(
            request_part("POST", "/api/data/v9.2/leads", {"firstname": "first", "lastname": "Batch"}, content_id="1"),
            request_part("POST", api(sandbox) + "/contacts", {"firstname": "Batch contact"}, content_id="2"),
            request_part(
                "POST",
                "/api/data/v9.2/accounts",
                {"name": "IcM Account", "originatingleadid@odata.bind": "$1", "primarycontactid@odata.bind": "$2"},
                content_id="3",
            ),
        ),
        request_part(
            "GET", "/api/data/v9.2/accounts?$select=name,_primarycontactid_value&$filter=name eq 'IcM Account'"
        ),
    )
    response = await send(sandbox, http, body)
    assert response.status_code == 200, response.text
    created, *rest = parts = answers(response)
    assert [(part.status, part.content_id, part.in_change_set) for part in parts] == [
        (204, "1", True),
        (204, "2", True),
        (204, "3", True),
        (200, None, False),
    ]
    assert created.headers["odata-entityid"].startswith(api(sandbox) + "/leads(")
    assert created.headers["location"] == created.headers["odata-entityid"]
    contact_id = rest[0].headers["odata-entityid"].removeprefix(api(sandbox) + "/contacts(").rstrip(")")
    [account] = rest[2].json()["value"]
    assert account["_primarycontactid_value"] == contact_id
    assert rest[1].headers["odata-entityid"].endswith(f"/accounts({account['accountid']})")


async def test_a_reference_in_the_url_updates_the_row_written_earlier_in_the_change_set(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    body = batch_body(
        change_set(
            request_part("POST", "/api/data/v9.2/accounts", {"name": "Batch before"}, content_id="1"),
            request_part("PATCH", "$1", {"name": "Batch after"}, content_id="2"),
        )
    )
    response = await send(sandbox, http, body)
    assert [part.status for part in answers(response)] == [204, 204]
    assert await names(http, sandbox, "accounts", "Batch ") == ["Batch after"]


async def test_a_reference_in_an_odata_id_associates_rows_written_earlier_in_the_change_set(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    body = batch_body(
        change_set(
            request_part("POST", api(sandbox) + "/accounts", {"name": "Batch linked"}, content_id="1"),
            request_part("POST", api(sandbox) + "/contacts", {"firstname": "Linked"}, content_id="2"),
            request_part("PUT", "$1/primarycontactid/$ref", {"@odata.id": "$2"}, content_id="3"),
        )
    )
    account, contact, linked = answers(await send(sandbox, http, body))
    assert linked.status == 204
    row = await http.get(account.headers["odata-entityid"] + "?$select=_primarycontactid_value", headers=auth(sandbox))
    assert contact.headers["odata-entityid"].endswith(f"({row.json()['_primarycontactid_value']})")


async def test_the_first_failure_in_a_change_set_undoes_it_and_is_the_batchs_answer(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    body = batch_body(
        change_set(
            request_part("POST", "/api/data/v9.2/accounts", {"name": "Undone 1"}, content_id="1"),
            request_part("POST", "/api/data/v9.2/accounts", {"name": "Undone " + "x" * 200}, content_id="2"),
            request_part("POST", "/api/data/v9.2/accounts", {"name": "Undone 3"}, content_id="3"),
        ),
        request_part("GET", "/api/data/v9.2/WhoAmI"),
    )
    response = await send(sandbox, http, body)
    assert response.status_code == 400
    [failure] = answers(response)
    assert (failure.status, failure.in_change_set, failure.content_id) == (400, True, "2")
    assert failure.json()["error"]["code"] == "0x80044331"
    assert "exceeded the maximum allowed length of '160'" in failure.json()["error"]["message"]
    assert await names(http, sandbox, "accounts", "Undone") == []


async def test_without_continue_on_error_the_batch_stops_at_the_first_failure(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    body = batch_body(
        request_part("POST", "/api/data/v9.2/accounts", {"name": "Stop 1"}),
        request_part("POST", "/api/data/v9.2/accounts", {"nosuchcolumn": 1}),
        request_part("POST", "/api/data/v9.2/accounts", {"name": "Stop 3"}),
    )
    response = await send(sandbox, http, body)
    assert response.status_code == 400
    assert [part.status for part in answers(response)] == [204, 400]
    assert await names(http, sandbox, "accounts", "Stop") == ["Stop 1"]


async def test_continue_on_error_runs_every_request_and_answers_200(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    body = batch_body(
        request_part("POST", "/api/data/v9.2/accounts", {"name": "Go " + "x" * 200}),
        change_set(
            request_part("POST", "/api/data/v9.2/accounts", {"name": "Go rolled back"}),
            request_part(
                "PATCH",
                "/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000009)",
                {"name": "x"},
                headers=("If-Match: *",),
            ),
        ),
        request_part("POST", "/api/data/v9.2/accounts", {"name": "Go 3"}),
        request_part("GET", "/api/data/v9.2/accounts?$select=name&$filter=startswith(name,'Go ')"),
    )
    response = await send(sandbox, http, body, Prefer="odata.continue-on-error")
    assert response.status_code == 200
    too_long, change_set_failure, created, query = answers(response)
    assert too_long.status == 400
    assert (change_set_failure.status, change_set_failure.in_change_set) == (404, True)
    assert change_set_failure.json()["error"]["code"] == "0x80040217"
    assert created.status == 204
    assert [row["name"] for row in query.json()["value"]] == ["Go 3"]


async def test_each_request_in_a_batch_meets_the_callers_security(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    mine = await http.get(api(sandbox) + "/accounts?$top=1&$select=name", headers=auth(sandbox, "alice"))
    alices = mine.json()["value"][0]["accountid"]
    reader = await send(
        sandbox,
        http,
        batch_body(change_set(request_part("POST", "/api/data/v9.2/accounts", {"name": "By carol"}))),
        user="carol",
    )
    [refused] = answers(reader)
    assert (reader.status_code, refused.status) == (403, 403)
    assert refused.json()["error"]["code"] == "0x80040220"
    other = await send(
        sandbox,
        http,
        batch_body(
            change_set(
                request_part("POST", "/api/data/v9.2/accounts", {"name": "By bob"}),
                request_part("PATCH", f"/api/data/v9.2/accounts({alices})", {"name": "Taken by bob"}),
            )
        ),
        user="bob",
    )
    [denied] = answers(other)
    assert denied.json()["error"]["code"] == "0x80048306"
    assert await names(http, sandbox, "accounts", "By ") == []
    assert await names(http, sandbox, "accounts", "Taken") == []


async def test_etags_keys_and_representations_work_inside_a_batch(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    row = (
        await http.get(api(sandbox) + "/accounts(accountnumber='A-1004')?$select=name", headers=auth(sandbox))
    ).json()
    url = f"/api/data/v9.2/accounts({row['accountid']})"
    body = batch_body(
        request_part("PATCH", url, {"name": "Fresh"}, headers=(f"If-Match: {row['@odata.etag']}",)),
        request_part("PATCH", url, {"name": "Stale"}, headers=(f"If-Match: {row['@odata.etag']}",)),
        request_part(
            "PATCH",
            "accounts(accountnumber='BATCH-1')?$select=name,accountnumber",
            {"name": "Keyed in batch"},
            headers=("Prefer: return=representation",),
        ),
        request_part("GET", url + "?$select=name"),
    )
    response = await send(sandbox, http, body, Prefer="odata.continue-on-error")
    fresh, stale, keyed, read = answers(response)
    assert fresh.status == 204
    assert (stale.status, stale.json()["error"]["code"]) == (412, "0x80060882")
    assert keyed.status == 201
    assert keyed.json()["accountnumber"] == "BATCH-1"
    assert keyed.headers["preference-applied"] == "return=representation"
    assert read.json()["name"] == "Fresh"
    assert read.headers["etag"] == read.json()["@odata.etag"]


NEVER_RUN = request_part("POST", "accounts", {"name": "Never run"})
LATER_REFERENCE = change_set(
    request_part("POST", "contacts", {"parentcustomerid_account@odata.bind": "$1"}, content_id="2"),
    request_part("POST", "accounts", {"name": "QQQQ"}, content_id="1"),
)


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        (batch_body(NEVER_RUN, LATER_REFERENCE), "Content-ID Reference: '$1' does not exist in the batch context."),
        (batch_body(NEVER_RUN, request_part("PATCH", "$1", {})), "Content-ID Reference: '$1' does not exist"),
        (batch_body(NEVER_RUN, change_set(request_part("GET", "accounts"))), "An invalid HTTP method 'GET'"),
        (batch_body(NEVER_RUN, request_part("POST", "$batch", {})), "can't contain other batch requests"),
        (batch_body(NEVER_RUN).removesuffix(f"--{BATCH}--\r\n".encode()), "unexpected end of input"),
        (
            batch_body(NEVER_RUN, "Content-Type: application/http\r\n\r\nGET WhoAmI HTTP/1.1\r\n"),
            "'Content-Transfer-Encoding' header is missing or invalid",
        ),
        (batch_body(NEVER_RUN, request_part("GET", "WhoAmI").replace(" HTTP/1.1", "")), "request line"),
        (batch_body(NEVER_RUN, request_part("GET", "WhoAmI").replace("HTTP/1.1", "HTTP/2")), "HTTP version"),
    ],
)
async def test_a_malformed_batch_is_refused_before_anything_runs(
    sandbox: Sandbox, http: httpx2.AsyncClient, body: bytes, message_part: str
) -> None:
    status, code, message = error_of(await send(sandbox, http, body))
    assert (status, code) == (400, "0x80060888")
    assert message_part in message
    assert await names(http, sandbox, "accounts", "Never run") == []


async def test_a_batch_needs_a_multipart_content_type(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.post(api(sandbox) + "/$batch", content=b"{}", headers=auth(sandbox))
    status, code, message = error_of(response)
    assert (status, code) == (400, "0x80060888")
    assert "multipart/mixed; boundary=" in message


async def test_a_thousand_requests_are_answered_and_one_more_is_refused(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    whoami = request_part("GET", "WhoAmI")
    allowed = await send(sandbox, http, batch_body(*[whoami] * 1000))
    assert allowed.status_code == 200
    assert len(answers(allowed)) == 1000
    refused = await send(sandbox, http, batch_body(*[whoami] * 1001))
    assert error_of(refused)[2] == (
        "The current batch message contains too many parts. Only batch messages with a maximum number of "
        "'1000' query operations, including changeset operations, are allowed."
    )
    create = request_part("POST", "accounts", {"name": "Too many"})
    too_big = await send(sandbox, http, batch_body(change_set(*[create] * 1001)))
    assert "A maximum number of '1000' operations are allowed in a change set." in error_of(too_big)[2]
    assert await names(http, sandbox, "accounts", "Too many") == []


async def test_a_fault_on_the_batch_refuses_all_of_it(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    sandbox.faults.add(Fault(status=429, retry_after=3, path=r"/\$batch$"))
    body = batch_body(request_part("POST", "accounts", {"name": "Throttled"}))
    response = await send(sandbox, http, body)
    assert error_of(response)[:2] == (429, "0x80072322")
    assert response.headers["retry-after"] == "3"
    assert await names(http, sandbox, "accounts", "Throttled") == []
    assert (await send(sandbox, http, body)).status_code == 200


async def test_a_fault_on_one_inner_write_undoes_its_change_set(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    sandbox.faults.add(Fault(status=503, method="POST", path=r"/contacts$"))
    body = batch_body(
        change_set(
            request_part("POST", "accounts", {"name": "Faulted account"}, content_id="1"),
            request_part("POST", "contacts", {"lastname": "Faulted", "parentcustomerid_account@odata.bind": "$1"}),
        )
    )
    response = await send(sandbox, http, body)
    assert response.status_code == 503
    [failure] = answers(response)
    assert failure.status == 503
    assert failure.headers["retry-after"] == "1"
    assert await names(http, sandbox, "accounts", "Faulted") == []
    assert sandbox.faults.faults == []


async def test_a_fault_after_an_inner_write_outside_a_change_set_keeps_the_write(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    sandbox.faults.add(Fault(kind="after", status=503, method="POST", path=r"/accounts$"))
    response = await send(sandbox, http, batch_body(request_part("POST", "accounts", {"name": "Kept anyway"})))
    assert [part.status for part in answers(response)] == [503]
    assert await names(http, sandbox, "accounts", "Kept anyway") == ["Kept anyway"]
