"""Writes as the Web API takes many at once: `$batch` requests, bulk-message targets, and what answers say.

Following "Execute batch operations using the Web API": each write is one request of the batch (a create a
`POST` to the entity set carrying its id, an update or upsert a `PATCH`, a delete a `DELETE`, `If-Match` as the
single writes send it); in a change set each has a `Content-ID`, and a write that binds to, or changes, a row
created earlier in the set refers to it as `$<Content-ID>`, as the page documents. Following "Use bulk
operation messages": a target of CreateMultiple, UpdateMultiple or UpsertMultiple carries its `@odata.type` and
names its row by primary key (`@odata.id` for upserts). `_write_set.py` decides what to send, and when.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

import httpx2

from ._errors import DUPLICATE_RECORD, RECORD_NOT_FOUND, DataverseError, ServiceError, Throttled, error_from_response
from ._metadata import TableSummary
from ._multipart import BatchRequest, BatchResponse, MalformedBatch, decode_batch, encode_batch
from ._odata import identifier, key_segment
from ._retry import parse_retry_after

if TYPE_CHECKING:
    from ._client import RowKey
    from ._transport import Transport

Action = Literal["create", "update", "upsert", "delete"]

MAX_BATCH_REQUESTS: Final = 1000  # "Batch requests can contain up to 1000 individual requests"
MULTIPLE: Final[Mapping[str, str]] = {
    "create": "CreateMultiple",
    "update": "UpdateMultiple",
    "upsert": "UpsertMultiple",
}
_NOT_A_DATA_ERROR: Final = frozenset({DUPLICATE_RECORD, RECORD_NOT_FOUND})


@dataclass(frozen=True)
class RowWrite:
    """One write of a set, checked by the caller: `values` is the JSON body (lookups as `@odata.bind`).

    `key` is the row's id or alternate key; a create's key is the id it creates (one is made when None).
    """

    action: Action
    table: str
    key: RowKey | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    etag: str | None = None


@dataclass
class PlannedWrite:
    """A write of a set as it is sent: its place, its table, its row id when known before sending."""

    index: int
    write: RowWrite
    table: TableSummary
    id: str | None  # the row's id when known before sending (creates, writes by id)
    lost: bool = False  # an earlier attempt's answer was lost: it may have landed
    error: DataverseError | None = None  # why its last attempt did not run

    @property
    def repeats_safely(self) -> bool:
        """Whether sending it again after it landed does nothing more, or fails in a way that says it landed:
        a PATCH with fixed values, a DELETE (its repeat finds the row gone), with no etag."""
        return self.write.action == "upsert" or (self.write.action != "create" and self.write.etag is None)


def plan_write(index: int, write: RowWrite, table: TableSummary) -> PlannedWrite:
    """The write at `index`, with its row id: a create's own, or one made for it; a write's by id."""
    row_id: str | None = None
    if write.action == "create":
        row_id = str(uuid.UUID(str(write.key))) if write.key is not None else str(uuid.uuid4())
    elif isinstance(write.key, str | uuid.UUID):
        row_id = str(uuid.UUID(str(write.key)))
    return PlannedWrite(index, write, table, row_id)


def batch_requests(transport: Transport, planned: list[PlannedWrite], *, change_set: bool) -> list[BatchRequest]:
    """The writes as `$batch` requests; in a change set, references to rows it creates go by Content-ID."""
    created: dict[str, str] = {}  # "/<entity set>(<id>)" -> Content-ID of the create
    requests = []
    for number, item in enumerate(planned, start=1):
        write, table = item.write, item.table
        content_id = str(number) if change_set else None
        entity_set = identifier(table.entity_set_name, "entity set")
        body: dict[str, Any] | None = {
            name: created.get(bound_path(value) or "", value) if name.endswith("@odata.bind") else value
            for name, value in write.values.items()
        }
        headers: dict[str, str] = {}
        if write.action == "create":
            assert body is not None and item.id is not None
            body[table.primary_id] = item.id
            method, url = "POST", transport.url(entity_set)
            if change_set:
                created[f"/{entity_set.lower()}({item.id})"] = f"${number}"
        else:
            assert write.key is not None
            path = f"{entity_set}({quote(key_segment(write.key), safe=chr(39) + '=,-')})"
            earlier = created.get(f"/{entity_set.lower()}({item.id})") if item.id else None
            url = earlier if earlier and write.action != "delete" else transport.url(path)
            method = "DELETE" if write.action == "delete" else "PATCH"
            if write.action == "delete":
                body = None
            if write.action != "upsert" and (write.etag or write.action == "update"):
                headers["If-Match"] = write.etag or "*"
        requests.append(BatchRequest(method, url, headers, body, content_id))
    return requests


async def send_batch(
    transport: Transport, items: list[BatchRequest] | list[list[BatchRequest]], *, continue_on_error: bool
) -> list[BatchResponse]:
    """The requests (a list: one change set) in one `$batch`; the responses, in order."""
    content_type, body = encode_batch(items)
    headers = {"Content-Type": content_type}
    if continue_on_error:
        headers["Prefer"] = "odata.continue-on-error"
    # Not repeated by the transport after an unclear failure: the read-back decides what is sent again.
    outcome = await transport.send(
        "POST",
        transport.url("$batch"),
        repeatability="unsafe",
        content=body,
        headers=headers,
        keep=_is_batch_answer,
    )
    try:
        return decode_batch(outcome.response.headers.get("content-type", ""), outcome.response.content)
    except MalformedBatch as error:
        error.may_have_written = outcome.response.is_success  # it ran, but what it did cannot be read
        raise


def bulk_target(item: PlannedWrite, message: str) -> dict[str, Any]:
    """One item of a bulk message's `Targets`: the body, its `@odata.type`, and the row it is."""
    target = {**item.write.values, "@odata.type": f"Microsoft.Dynamics.CRM.{item.table.logical_name}"}
    if message == "UpsertMultiple":
        assert item.write.key is not None
        entity_set = identifier(item.table.entity_set_name, "entity set")
        target["@odata.id"] = f"{entity_set}({key_segment(item.write.key)})"
    else:
        target[item.table.primary_id] = item.id
    return target


def binds(values: Mapping[str, Any]) -> list[Any]:
    return [value for name, value in values.items() if name.endswith("@odata.bind")]


def bound_path(value: Any) -> str | None:
    """`/<entity set>(<id>)` of a bind value, lower case, to compare with the rows a set creates."""
    if not isinstance(value, str) or not value.endswith(")") or "(" not in value:
        return None
    entity_set, _, row_id = value.rstrip(")").partition("(")
    try:
        return f"/{entity_set.lstrip('/').lower()}({uuid.UUID(row_id)})"
    except ValueError:
        return None


def created_paths(planned: list[PlannedWrite]) -> set[str]:
    return {f"/{item.table.entity_set_name.lower()}({item.id})" for item in planned if item.write.action == "create"}


def response_ids(planned: list[PlannedWrite], responses: list[BatchResponse]) -> list[str | None]:
    """Each write's row id: known before sending, or read from the response's `OData-EntityId`."""
    by_content_id = {response.content_id: response for response in responses if response.content_id}
    found: list[str | None] = []
    for number, item in enumerate(planned, start=1):
        response = by_content_id.get(str(number)) or (responses[number - 1] if number <= len(responses) else None)
        found.append(item.id or (entity_id(response) if response is not None else None))
    return found


def entity_id(response: BatchResponse) -> str | None:
    """The row id in a response's `OData-EntityId` (`.../accounts(<id>)`), when it names one by id."""
    location = response.headers.get("odata-entityid") or response.headers.get("location") or ""
    inside = location.rstrip(")").rpartition("(")[2]
    try:
        return str(uuid.UUID(inside))
    except ValueError:
        return None


def response_error(response: BatchResponse) -> ServiceError:
    request_id = response.headers.get("req_id") or response.headers.get("x-ms-service-request-id")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    return error_from_response(response.status, response.json(), request_id=request_id, retry_after=retry_after)


def _is_batch_answer(response: httpx2.Response) -> bool:
    """A `$batch` that stopped at a failed request answers 4xx with that request's response inside."""
    return (
        400 <= response.status_code < 500
        and response.status_code not in (401, 429)
        and response.headers.get("content-type", "").lower().startswith("multipart/mixed")
    )


def is_unsupported(error: DataverseError, message: str) -> bool:
    """Whether the service refused a bulk message for the table itself, not for one of the rows."""
    if not isinstance(error, ServiceError) or error.status not in (400, 404, 405, 501) or isinstance(error, Throttled):
        return False
    if error.code in _NOT_A_DATA_ERROR:
        return False
    text = error.message.lower()
    return message.lower() in text or "not support" in text or "not implemented" in text
