"""Many writes in few requests: the `$batch` wire format on the page's own examples, then write sets against the
sandbox (change sets, CreateMultiple, continue-on-error, throttling and lost answers)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx2
import pytest

from dataverse import DataverseClient, RowWrite, StaticTokenProvider
from dataverse._multipart import BatchRequest, MalformedBatch, decode_batch, encode_batch
from sandbox import Fault, Sandbox

from .support import instant_retries

ORG = "https://contoso.crm.dynamics.com"

# "Execute batch operations using the Web API": the answer to a change set of three creates and a GET after it.
CHANGE_SET_ANSWER = f"""--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f
Content-Type: multipart/mixed; boundary=changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15

--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: {ORG}/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)
OData-EntityId: {ORG}/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)


--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 2

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: {ORG}/api/data/v9.2/tasks(e83ffc82-e292-ed11-aad1-000d3a9933c9)
OData-EntityId: {ORG}/api/data/v9.2/tasks(e83ffc82-e292-ed11-aad1-000d3a9933c9)


--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 3

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: {ORG}/api/data/v9.2/tasks(e93ffc82-e292-ed11-aad1-000d3a9933c9)
OData-EntityId: {ORG}/api/data/v9.2/tasks(e93ffc82-e292-ed11-aad1-000d3a9933c9)


--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15--
--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 200 OK
Content-Type: application/json; odata.metadata=minimal; odata.streaming=true
OData-Version: 4.0

{{
  "@odata.context": "{ORG}/api/data/v9.2/$metadata#tasks(subject)",
  "value": [
    {{
      "@odata.etag": "W/\\"77181173\\"",
      "subject": "Task 1 in batch",
      "activityid": "e73ffc82-e292-ed11-aad1-000d3a9933c9"
    }}
  ]
}}
--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f--
"""

# The same page: with continue-on-error, the first request fails and the others run.
CONTINUE_ON_ERROR_ANSWER = f"""--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 400 Bad Request
REQ_ID: de4c5227-4a28-4ebd-8ced-3392ece1697b
Content-Type: application/json; odata.metadata=minimal
OData-Version: 4.0

{{"error":{{"code":"0x80044331","message":"A validation error occurred."}}}}
--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: {ORG}/api/data/v9.2/tasks(aed2ae8b-3c94-ed11-aad1-000d3a9933c9)
OData-EntityId: {ORG}/api/data/v9.2/tasks(aed2ae8b-3c94-ed11-aad1-000d3a9933c9)


--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: {ORG}/api/data/v9.2/tasks(b181a991-3c94-ed11-aad1-000d3a9933c9)
OData-EntityId: {ORG}/api/data/v9.2/tasks(b181a991-3c94-ed11-aad1-000d3a9933c9)


--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139--
"""

# A failed change set as the service answers it (MicrosoftDocs/powerapps-docs issue 2843): the failing
# request's response, with its Content-ID, alone in the change set's part.
FAILED_CHANGE_SET_ANSWER = """--batchresponse_6cbc8fc1-8988-4049-8cb8-63dc6b8de399\r
Content-Type: multipart/mixed; boundary=changesetresponse_d6b175ef-c905-4196-a472-029b109a60cc\r
\r
--changesetresponse_d6b175ef-c905-4196-a472-029b109a60cc\r
Content-Type: application/http\r
Content-Transfer-Encoding: binary\r
Content-ID: 3\r
\r
HTTP/1.1 400 Bad Request\r
REQ_ID: cbd53703-aee5-4563-a416-a65dcc268e7b\r
Content-Type: application/json; odata.metadata=minimal\r
OData-Version: 4.0\r
\r
{"error":{"code":"0x80044331","message":"A validation error occurred."}}\r
--changesetresponse_d6b175ef-c905-4196-a472-029b109a60cc--\r
--batchresponse_6cbc8fc1-8988-4049-8cb8-63dc6b8de399--\r
"""


def boundary(text: str) -> str:
    return f"multipart/mixed; boundary={text.split(chr(10), 1)[0].strip().removeprefix('--')}"


def test_the_pages_change_set_answer_reads_as_four_responses_in_order() -> None:
    responses = decode_batch(boundary(CHANGE_SET_ANSWER), CHANGE_SET_ANSWER.encode())
    assert [(response.status, response.content_id) for response in responses] == [
        (204, "1"),
        (204, "2"),
        (204, "3"),
        (200, None),
    ]
    assert responses[1].headers["odata-entityid"].endswith("tasks(e83ffc82-e292-ed11-aad1-000d3a9933c9)")
    assert responses[3].json()["value"][0]["subject"] == "Task 1 in batch"
    assert responses[0].json() is None


def test_the_pages_continue_on_error_answer_carries_the_error_and_the_others() -> None:
    responses = decode_batch(boundary(CONTINUE_ON_ERROR_ANSWER), CONTINUE_ON_ERROR_ANSWER.encode())
    assert [response.status for response in responses] == [400, 204, 204]
    assert responses[0].json()["error"]["code"] == "0x80044331"
    assert responses[0].headers["req_id"] == "de4c5227-4a28-4ebd-8ced-3392ece1697b"


def test_a_failed_change_set_names_the_request_that_failed_it() -> None:
    [failed] = decode_batch(boundary(FAILED_CHANGE_SET_ANSWER), FAILED_CHANGE_SET_ANSWER.encode())
    assert (failed.status, failed.content_id) == (400, "3")
    assert failed.json() == {"error": {"code": "0x80044331", "message": "A validation error occurred."}}


@pytest.mark.parametrize(
    "body",
    [b"not multipart at all", b"--other\r\n\r\nHTTP/1.1 200 OK\r\n\r\n--other--", b"--b\r\nContent-Type: x\r\n\r\n"],
)
def test_an_answer_that_is_not_a_batch_is_refused(body: bytes) -> None:
    with pytest.raises(MalformedBatch):
        decode_batch("multipart/mixed; boundary=b", body)


def test_a_change_set_is_written_as_the_page_shows_it() -> None:
    content_type, body = encode_batch(
        [
            [
                BatchRequest("POST", f"{ORG}/api/data/v9.2/accounts", body={"name": "Contoso"}, content_id="1"),
                BatchRequest("PATCH", "$1", {"If-Match": "*"}, {"primarycontactid@odata.bind": "$2"}, "2"),
            ],
            BatchRequest("DELETE", f"{ORG}/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001)"),
        ]
    )
    batch = content_type.removeprefix("multipart/mixed; boundary=")
    text = body.decode()
    lines = text.split("\r\n")
    assert batch.startswith("batch_") and lines[0] == f"--{batch}"
    assert lines[1].startswith("Content-Type: multipart/mixed; boundary=changeset_")
    change_set = lines[1].rpartition("=")[2]
    first = text.index(f"--{change_set}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n")
    assert text[first:].split("\r\n")[3:8] == [
        "Content-ID: 1",
        "",
        f"POST {ORG}/api/data/v9.2/accounts HTTP/1.1",
        "Content-Type: application/json; type=entry",
        "",
    ]
    assert 'PATCH $1 HTTP/1.1\r\nIf-Match: *\r\nContent-Type: application/json; type=entry\r\n\r\n{"primary' in text
    assert f"--{change_set}--\r\n\r\n--{batch}\r\n" in text
    assert text.endswith(f"HTTP/1.1\r\n\r\n\r\n--{batch}--\r\n")


def test_what_is_encoded_decodes_the_same_way() -> None:
    """The two halves agree: a request body parsed as an answer gives back each part's lines and Content-ID."""
    content_type, body = encode_batch([[BatchRequest("DELETE", f"{ORG}/x", content_id="7")]])
    answer = body.replace(b"DELETE https://contoso.crm.dynamics.com/x HTTP/1.1", b"HTTP/1.1 204 No Content")
    [response] = decode_batch(content_type, answer)
    assert (response.status, response.content_id, response.body) == (204, "7", b"")


# -- write sets against the sandbox ---------------------------------------------------------------------------


def client(sandbox: Sandbox, http: httpx2.AsyncClient, **options: Any) -> DataverseClient:
    return DataverseClient(http, sandbox.environments["contoso"].url, StaticTokenProvider(sandbox.token()), **options)


def writes_sent(sandbox: Sandbox) -> list[str]:
    return [f"{record.method} {record.path}" for record in sandbox.request_log.records if record.method != "GET"]


async def account_names(sandbox: Sandbox, http: httpx2.AsyncClient, ids: list[str]) -> dict[str, str]:
    sandbox.faults.clear()
    filter_text = " or ".join(f"accountid eq {row_id}" for row_id in ids)
    response = await http.get(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/accounts",
        params={"$select": "name", "$filter": filter_text},
        headers={"Authorization": f"Bearer {sandbox.token()}"},
    )
    return {row["accountid"]: row["name"] for row in response.json()["value"]}


def new_accounts(count: int, prefix: str = "Batch") -> list[RowWrite]:
    return [RowWrite("create", "account", uuid.uuid4(), {"name": f"{prefix} {n}"}) for n in range(count)]


async def test_creates_on_one_table_go_as_one_create_multiple(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    writes = new_accounts(5)
    sandbox.request_log.records.clear()
    result = await client(sandbox, http).write_set(writes)
    assert [outcome.outcome for outcome in result.outcomes] == ["written"] * 5
    assert writes_sent(sandbox) == ["POST /api/data/v9.2/accounts/Microsoft.Dynamics.CRM.CreateMultiple"]
    ids = [str(write.key) for write in writes]
    assert [outcome.id for outcome in result.outcomes] == ids
    assert len(await account_names(sandbox, http, ids)) == 5


async def test_a_table_without_create_multiple_is_learnt_and_written_by_change_set(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    dataverse = client(sandbox, http)
    writes = [RowWrite("create", "transactioncurrency", None, {"currencyname": f"Coin {n}"}) for n in range(2)]
    sandbox.request_log.records.clear()
    first = await dataverse.write_set(writes)
    second = await dataverse.write_set(writes[:1] + writes[1:])
    assert ("CreateMultiple", "transactioncurrency") in dataverse.unsupported_messages
    assert writes_sent(sandbox)[0].endswith("/transactioncurrencies/Microsoft.Dynamics.CRM.CreateMultiple")
    assert writes_sent(sandbox)[1:] == ["POST /api/data/v9.2/$batch"] * 2  # the second set goes straight there
    assert first.sent[-1] == second.sent[-1] == "$batch with one change set of 2 writes"


async def test_a_change_set_binds_to_the_rows_it_creates_by_content_id(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = uuid.uuid4()
    writes = [
        RowWrite("create", "account", account, {"name": "Parent"}),
        *[
            RowWrite(
                "create",
                "contact",
                None,
                {"lastname": f"C{n}", "parentcustomerid_account@odata.bind": f"/accounts({account})"},
            )
            for n in range(3)
        ],
        RowWrite("update", "account", account, {"telephone1": "555"}),
    ]
    with_bodies: list[bytes] = []
    send = httpx2.AsyncClient.send

    async def recording(self: httpx2.AsyncClient, request: httpx2.Request, **options: Any) -> httpx2.Response:
        with_bodies.append(request.content)
        return await send(self, request, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx2.AsyncClient, "send", recording)
        result = await client(sandbox, http).write_set(writes)
    assert [outcome.outcome for outcome in result.outcomes] == ["written"] * 5
    [batch] = [body for body in with_bodies if b"changeset_" in body]
    assert batch.count(b'"parentcustomerid_account@odata.bind":"$1"') == 3
    assert b"PATCH $1 HTTP/1.1" in batch
    response = await http.get(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/contacts",
        params={"$select": "lastname", "$filter": f"_parentcustomerid_value eq {account}"},
        headers={"Authorization": f"Bearer {sandbox.token()}"},
    )
    assert sorted(row["lastname"] for row in response.json()["value"]) == ["C0", "C1", "C2"]


async def test_a_failing_write_rolls_the_change_set_back(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    writes = [*new_accounts(2), RowWrite("create", "account", None, {"name": "Dup", "accountnumber": "A-1001"})]
    writes.append(RowWrite("create", "contact", None, {"lastname": "After"}))
    result = await client(sandbox, http).write_set(writes)
    assert [outcome.outcome for outcome in result.outcomes] == ["not written"] * 4
    assert result.error is not None and "rolled back" in str(result.error)
    assert await account_names(sandbox, http, [str(write.key) for write in writes[:2]]) == {}


async def test_each_write_alone_leaves_the_others_written(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    writes = [*new_accounts(2), RowWrite("create", "account", None, {"name": "Dup", "accountnumber": "A-1001"})]
    writes.append(RowWrite("create", "account", uuid.uuid4(), {"name": "After"}))
    sandbox.request_log.records.clear()
    result = await client(sandbox, http).write_set(writes, atomic=False)
    assert [outcome.outcome for outcome in result.outcomes] == ["written", "written", "not written", "written"]
    failure = result.outcomes[2].error
    assert failure is not None and "0x80040237" in str(failure) and "Nothing was written" in str(failure)
    ids = [str(writes[n].key) for n in (0, 1, 3)]
    assert len(await account_names(sandbox, http, ids)) == 3
    assert writes_sent(sandbox) == ["POST /api/data/v9.2/$batch"]


async def test_a_throttled_batch_waits_and_is_sent_again(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    retry, sleep = instant_retries()
    writes = [*new_accounts(1), RowWrite("create", "contact", None, {"lastname": "T"})]
    sandbox.faults.add(Fault(kind="status", status=429, retry_after=7, path=r"\$batch"))
    result = await client(sandbox, http, retry=retry).write_set(writes)
    assert [outcome.outcome for outcome in result.outcomes] == ["written"] * 2
    assert sleep.waits == [7]


async def test_a_lost_answer_to_a_change_set_is_read_back_and_never_written_twice(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, _ = instant_retries()
    writes = [*new_accounts(3, "Lost"), RowWrite("create", "contact", None, {"lastname": "Lost"})]
    sandbox.faults.add(Fault(kind="drop_after", path=r"\$batch"))
    sandbox.request_log.records.clear()
    result = await client(sandbox, http, retry=retry).write_set(writes)
    assert [outcome.outcome for outcome in result.outcomes] == ["written"] * 4
    assert writes_sent(sandbox) == ["POST /api/data/v9.2/$batch"]  # read back, not sent again
    names = await account_names(sandbox, http, [str(write.key) for write in writes[:3]])
    assert sorted(names.values()) == ["Lost 0", "Lost 1", "Lost 2"]


async def test_a_change_set_lost_before_it_ran_is_sent_again(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    retry, _ = instant_retries()
    writes = [*new_accounts(2, "Dropped"), RowWrite("create", "contact", None, {"lastname": "Dropped"})]
    sandbox.faults.add(Fault(kind="drop", path=r"\$batch"))
    sandbox.request_log.records.clear()
    result = await client(sandbox, http, retry=retry).write_set(writes)
    assert [outcome.outcome for outcome in result.outcomes] == ["written"] * 3
    assert writes_sent(sandbox) == ["POST /api/data/v9.2/$batch"] * 2
    assert len(await account_names(sandbox, http, [str(write.key) for write in writes[:2]])) == 2


async def test_updates_whose_answer_is_lost_are_unknown_unless_they_repeat_safely(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, _ = instant_retries(max_attempts=2)
    dataverse = client(sandbox, http, retry=retry)
    created = new_accounts(2, "Etag")
    await dataverse.write_set(created, atomic=False)
    writes = [
        RowWrite("update", "account", created[0].key, {"name": "Changed"}),
        RowWrite("update", "account", created[1].key, {"name": "Changed"}, etag='W/"1"'),
    ]
    sandbox.faults.add(Fault(kind="drop_after", count=5, path=r"\$batch"))
    result = await dataverse.write_set(writes, atomic=False)
    assert [outcome.outcome for outcome in result.outcomes] == ["unknown", "unknown"]
    assert all("may or may not have been applied" in str(outcome.error) for outcome in result.outcomes)


async def test_an_atomic_set_above_the_batch_limit_is_refused_before_anything_is_sent(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    sandbox.request_log.records.clear()
    with pytest.raises(Exception, match="at most 1000 writes"):
        await client(sandbox, http).write_set(new_accounts(1001))
    assert writes_sent(sandbox) == []


async def test_progress_is_reported_after_each_chunk(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    heard: list[tuple[int, int]] = []

    async def progress(settled: int, total: int) -> None:
        heard.append((settled, total))

    result = await client(sandbox, http).write_set(new_accounts(250, "Chunk"), atomic=False, progress=progress)
    assert heard == [(100, 250), (200, 250), (250, 250)]
    assert len(result.sent) == 3 and json.dumps(result.sent).count("continue-on-error") == 3


def the_service_answering(batch_answer: str, status: int) -> httpx2.MockTransport:
    """A stand-in for the service as the issue shows it: a table list, and one answer to every `$batch`."""
    tables = [
        {"LogicalName": "account", "EntitySetName": "accounts", "PrimaryIdAttribute": "accountid"},
        {"LogicalName": "contact", "EntitySetName": "contacts", "PrimaryIdAttribute": "contactid"},
    ]

    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/EntityDefinitions"):
            return httpx2.Response(200, json={"value": tables})
        content_type = f"multipart/mixed; boundary={batch_answer.split(chr(13), 1)[0].removeprefix('--')}"
        return httpx2.Response(status, content=batch_answer.encode(), headers={"Content-Type": content_type})

    return httpx2.MockTransport(answer)


async def test_the_services_failed_change_set_names_the_write_that_failed() -> None:
    async with httpx2.AsyncClient(transport=the_service_answering(FAILED_CHANGE_SET_ANSWER, 400)) as http:
        dataverse = DataverseClient(http, ORG, StaticTokenProvider("token"))
        writes = [*new_accounts(2), RowWrite("create", "contact", None, {"firstname": "x" * 60})]
        result = await dataverse.write_set(writes)
    assert [outcome.outcome for outcome in result.outcomes] == ["not written"] * 3
    assert [outcome.error is not None for outcome in result.outcomes] == [False, False, True]
    assert str(result.error).startswith(
        "The change set of 3 writes failed at writes[2] (create of contact): Dataverse answered 400 (0x80044331): "
        "A validation error occurred. Nothing was written. The change set was rolled back."
    )


async def test_updates_and_upserts_of_one_table_go_as_one_bulk_message_each(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    dataverse = client(sandbox, http)
    created = new_accounts(3, "Before")
    await dataverse.write_set(created)
    sandbox.request_log.records.clear()
    updated = await dataverse.write_set([RowWrite("update", "account", w.key, {"name": "After"}) for w in created])
    keys = [{"accountnumber": f"BULK-{n}"} for n in range(3)]
    upserted = await dataverse.write_set([RowWrite("upsert", "account", key, {"name": "Upserted"}) for key in keys])
    assert [outcome.outcome for outcome in updated.outcomes + upserted.outcomes] == ["written"] * 6
    assert writes_sent(sandbox) == [
        "POST /api/data/v9.2/accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
        "POST /api/data/v9.2/accounts/Microsoft.Dynamics.CRM.UpsertMultiple",
    ]
    assert set((await account_names(sandbox, http, [str(w.key) for w in created])).values()) == {"After"}
    response = await http.get(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/accounts",
        params={"$select": "name", "$filter": "startswith(accountnumber,'BULK-')"},
        headers={"Authorization": f"Bearer {sandbox.token()}"},
    )
    assert [row["name"] for row in response.json()["value"]] == ["Upserted"] * 3


async def test_a_write_throttled_inside_a_batch_is_sent_again_after_retry_after(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, sleep = instant_retries()
    writes = [*new_accounts(1, "Inner"), RowWrite("create", "contact", uuid.uuid4(), {"lastname": "Inner"})]
    sandbox.faults.add(Fault(kind="status", status=429, retry_after=3, method="POST", path=r"/contacts$"))
    sandbox.request_log.records.clear()
    result = await client(sandbox, http, retry=retry).write_set(writes, atomic=False)
    assert [outcome.outcome for outcome in result.outcomes] == ["written"] * 2
    assert sleep.waits == [3]
    assert writes_sent(sandbox) == ["POST /api/data/v9.2/$batch"] * 2
    assert result.sent == ["$batch of 2 writes, continue-on-error", "$batch of 1 writes, continue-on-error"]


async def test_a_lost_answer_to_writes_on_their_own_is_read_back_and_resolved_write_by_write(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, _ = instant_retries()
    dataverse = client(sandbox, http, retry=retry)
    [existing] = new_accounts(1, "Existing")
    await dataverse.write_set([existing], atomic=False)
    writes = [*new_accounts(2, "Alone"), RowWrite("update", "account", existing.key, {"name": "Renamed"})]
    sandbox.faults.add(Fault(kind="drop_after", path=r"\$batch"))
    sandbox.request_log.records.clear()
    result = await dataverse.write_set(writes, atomic=False)
    assert [outcome.outcome for outcome in result.outcomes] == ["written"] * 3
    # The creates were read back and found; only the update, which repeats safely, was sent again.
    assert result.sent == ["$batch of 3 writes, continue-on-error", "$batch of 1 writes, continue-on-error"]
    names = await account_names(sandbox, http, [str(write.key) for write in [*writes[:2], existing]])
    assert sorted(names.values()) == ["Alone 0", "Alone 1", "Renamed"]
