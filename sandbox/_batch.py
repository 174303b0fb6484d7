"""`POST [api]/$batch`: many requests in one, change sets all or nothing.

As "Execute batch operations using the Web API" describes it (and OData 4.0, 11.7, which it follows):
    - requests run in order, answered in order, one `application/http` part each, in a `batchresponse_` body;
    - a change set (`multipart/mixed` part) runs in one SQLite transaction: the first failure undoes it and the
      change set's part holds that failure alone, with the failing request's Content-ID, as the service answers
      (a captured response in MicrosoftDocs/powerapps-docs issue 2843; OData 4.0 11.7.7.5 would drop the part);
      `$<Content-ID>` names the row an earlier request of the same change set wrote, at the start of a URL
      or as an `@odata.bind`/`@odata.id` value;
    - without `Prefer: odata.continue-on-error` the first failure ends the batch: it is the last part and the
      batch answers with its status; with it, the batch answers 200 and runs everything;
    - at most 1,000 requests; GET only outside change sets; no batch inside a batch.
Each inner request runs through `WebApi.dispatch` as the batch's caller, so every rule of a single request
(security, etags, keys, `@odata.bind`) holds inside a batch. Faults are matched again for each inner request
(kinds `status` and `after`), by its own method and path. A change set runs without yielding to the event
loop, so no other request's write can land inside its transaction.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from ._errors import ODATA_ERROR, WebApiError, bad_request, resource_not_found
from ._faults import Fault, fault_response
from ._multipart import HttpRequest, Part, boundary_of, http_part, multipart, read_http_request, split_parts

if TYPE_CHECKING:
    from ._security import Caller
    from ._webapi import WebApi

MAX_REQUESTS: Final = 1000  # "Batch requests can contain up to 1000 individual requests"
CHANGE_SET_METHODS: Final = ("POST", "PATCH", "PUT", "DELETE")
_REFERENCE: Final = re.compile(r"^\$([^/?]+)")


@dataclass(frozen=True)
class Operation:
    """One request of a batch, with the `Content-ID` it was given."""

    request: HttpRequest
    content_id: str | None


@dataclass(frozen=True)
class ChangeSet:
    operations: list[Operation]


@dataclass
class _Run:
    """What one batch's requests share: the caller, and the URLs of rows written under a `Content-ID`."""

    web_api: WebApi
    outer: Request
    caller: Caller
    locations: dict[str, str] = field(default_factory=dict)


class _ChangeSetFailed(Exception):
    """A request of a change set failed: undo the change set and answer with this response."""

    def __init__(self, response: Response, content_id: str | None) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.content_id = content_id


async def answer_batch(web_api: WebApi, request: Request, caller: Caller, segments: list[str]) -> Response:
    if segments != ["$batch"]:
        raise resource_not_found(segments[1])
    if request.method != "POST":
        raise WebApiError(405, ODATA_ERROR, "A batch request is sent with POST.")
    items = parse_batch(request.headers.get("content-type", ""), await request.body())
    continue_on_error = _continue_on_error(request.headers.get("prefer", ""))
    run = _Run(web_api, request, caller)
    parts: list[tuple[str, bytes]] = []
    status = 200
    for item in items:
        if isinstance(item, ChangeSet):
            failure, answered = await _run_change_set(run, item)
            # The service answers a failed change set with the failing request's response alone inside the change
            # set's part, with its Content-ID (as captured in MicrosoftDocs/powerapps-docs issue 2843).
            answers = [(failure.content_id, failure.response)] if failure else [(o.content_id, r) for o, r in answered]
            boundary = f"changesetresponse_{uuid.uuid4()}"
            inner = [("application/http", http_part(response, content_id)) for content_id, response in answers]
            parts.append((f"multipart/mixed; boundary={boundary}", multipart(boundary, inner)))
            if failure is None:
                continue
            response = failure.response
        else:
            response = await _run_operation(run, item)
            parts.append(("application/http", http_part(response, item.content_id)))
        if response.status_code >= 400 and not continue_on_error:
            # "The batch error represents the error of the first failing request." Nothing after it runs.
            status = response.status_code
            break
    boundary = f"batchresponse_{uuid.uuid4()}"
    return Response(
        multipart(boundary, parts) + b"\r\n", status_code=status, media_type=f"multipart/mixed; boundary={boundary}"
    )


def _continue_on_error(prefer: str) -> bool:
    match = re.search(r"odata\.continue-on-error(?:\s*=\s*(\w+))?", prefer, re.IGNORECASE)
    return match is not None and (match.group(1) or "true").lower() != "false"


# -- reading the batch -----------------------------------------------------------------------------------


def parse_batch(content_type: str, body: bytes) -> list[Operation | ChangeSet]:
    """The batch's requests and change sets, checked before any of them runs; a 400 WebApiError otherwise."""
    boundary = boundary_of(content_type)
    if boundary is None:
        raise bad_request(
            "A batch request needs the header 'Content-Type: multipart/mixed; boundary=batch_<unique identifier>'."
        )
    items: list[Operation | ChangeSet] = []
    for part in split_parts(body, boundary):
        inner_boundary = boundary_of(part.content_type)
        if inner_boundary is not None:
            operations = [_operation(inner, in_change_set=True) for inner in split_parts(part.content, inner_boundary)]
            _check_references(operations)
            items.append(ChangeSet(operations))
        else:
            operation = _operation(part, in_change_set=False)
            _check_references([operation], declared=False)
            items.append(operation)
    _check_size(items)
    return items


def _operation(part: Part, *, in_change_set: bool) -> Operation:
    content_type = part.content_type.split(";", 1)[0].strip().lower()
    if content_type != "application/http":
        if in_change_set and content_type == "multipart/mixed":
            raise bad_request("Nested change sets in a batch payload are not supported.")
        expected = "'application/http'" if in_change_set else "'multipart/mixed' or 'application/http'"
        raise bad_request(
            f"The 'Content-Type' header value '{part.content_type}' is invalid for a batch part: it must be {expected}."
        )
    if part.headers.get("content-transfer-encoding", "").lower() != "binary":
        raise bad_request(
            "The 'Content-Transfer-Encoding' header is missing or invalid. The 'Content-Transfer-Encoding' header "
            "must be specified for each MIME part of a batch message and must have the value 'binary'."
        )
    request = read_http_request(part.content)
    if in_change_set and request.method not in CHANGE_SET_METHODS:
        raise bad_request(
            f"An invalid HTTP method '{request.method}' was detected for a request in a change set. Requests in "
            "change sets only support the HTTP methods 'POST', 'PUT', 'DELETE', and 'PATCH'."
        )
    if urlsplit(request.target).path.rstrip("/").endswith("$batch"):
        raise bad_request("A batch request can't contain other batch requests.")
    return Operation(request, part.headers.get("content-id"))


def _check_references(operations: list[Operation], *, declared: bool = True) -> None:
    """Each `$<Content-ID>` must name a request earlier in the same change set ("Reference URIs in an operation")."""
    seen: set[str] = set()
    for operation in operations:
        for reference in _references(operation.request):
            if not declared or reference not in seen:
                raise bad_request(f"Content-ID Reference: '${reference}' does not exist in the batch context.")
        if operation.content_id is not None:
            if operation.content_id in seen:
                raise bad_request(
                    f"The content ID '{operation.content_id}' was found more than once in the same change set or "
                    "same batch request. Content IDs have to be unique across all operations of a change set."
                )
            seen.add(operation.content_id)


def _references(request: HttpRequest) -> list[str]:
    found = [match.group(1)] if (match := _REFERENCE.match(request.target)) else []
    try:
        body = json.loads(request.body) if request.body else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return found  # the request itself answers that its body is not JSON
    return found + [match.group(1) for value in _link_values(body) if (match := _REFERENCE.match(value))]


def _link_values(body: Any) -> list[str]:
    """The `@odata.bind` and `@odata.id` values of a body, where a `$<Content-ID>` may stand for a URL."""
    if not isinstance(body, dict):
        return []
    return [
        value
        for key, value in body.items()
        if isinstance(value, str) and (key.endswith("@odata.bind") or key == "@odata.id")
    ]


def _check_size(items: list[Operation | ChangeSet]) -> None:
    # The wording is the service's as clients report it (github.com/AleksandrRogov/DynamicsWebApi/pull/71,
    # github.com/MicrosoftDocs/powerapps-docs/issues/1890).
    for item in items:
        if isinstance(item, ChangeSet) and len(item.operations) > MAX_REQUESTS:
            raise bad_request(
                "The current change set contains too many operations. "
                f"A maximum number of '{MAX_REQUESTS}' operations are allowed in a change set."
            )
    total = sum(len(item.operations) if isinstance(item, ChangeSet) else 1 for item in items)
    if total > MAX_REQUESTS:
        raise bad_request(
            "The current batch message contains too many parts. Only batch messages with a maximum number of "
            f"'{MAX_REQUESTS}' query operations, including changeset operations, are allowed."
        )


# -- running it ------------------------------------------------------------------------------------------


async def _run_change_set(
    run: _Run, change_set: ChangeSet
) -> tuple[_ChangeSetFailed | None, list[tuple[Operation, Response]]]:
    """Run a change set in one transaction: the first failure undoes it all and is its only answer."""
    run.locations.clear()  # a Content-ID names a row within its own change set only
    answered: list[tuple[Operation, Response]] = []
    try:
        with run.web_api.environment.store.transaction():
            for operation in change_set.operations:
                response = await _run_operation(run, operation)
                if response.status_code >= 400:
                    raise _ChangeSetFailed(response, operation.content_id)
                answered.append((operation, response))
    except _ChangeSetFailed as failed:
        return failed, []
    return None, answered


async def _run_operation(run: _Run, operation: Operation) -> Response:
    """One inner request, through the same code as a request of its own, as the batch's caller."""
    from ._webapi import error_response, resource_segments  # deferred: _webapi imports this module lazily

    try:
        request = _inner_request(run, operation.request)
    except WebApiError as error:
        return error_response(error)
    fault = run.web_api.faults.pick(request.method, request.url.path, kinds=("status", "after"))
    if fault is not None and fault.kind == "status":
        return _fault_answer(fault)
    try:
        response = await run.web_api.dispatch(request, run.caller, resource_segments(request))
    except WebApiError as error:
        response = error_response(error)
    if fault is not None:
        return _fault_answer(fault)
    location = response.headers.get("odata-entityid")
    if operation.content_id is not None and location is not None:
        run.locations[operation.content_id] = location
    return response


def _fault_answer(fault: Fault) -> Response:
    status, headers, body = fault_response(fault)
    response = Response(body, status_code=status)
    for name, value in headers:
        if name != b"content-length":
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
    return response


def _inner_request(run: _Run, request: HttpRequest) -> Request:
    """A starlette request for an inner request, as if it had come on its own to the batch's host."""
    target = _resolve(run, request.target)
    parts = urlsplit(target)
    path = parts.path if parts.path.startswith("/") else f"{_service_root(run.outer)}/{parts.path}"
    body = request.body
    if body and any(_REFERENCE.match(value) for value in _link_values(_json_or_none(body))):
        body = json.dumps(_resolve_links(run, json.loads(body))).encode()
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers]
    scope = {
        **{key: run.outer.scope[key] for key in ("server", "client", "scheme", "root_path", "http_version")},
        "type": "http",
        "method": request.method,
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": parts.query.encode("latin-1"),
        "headers": headers,
        "state": {},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def _resolve(run: _Run, target: str) -> str:
    """`$1/lastname` to the URL of the row Content-ID 1 wrote, followed by `/lastname`."""
    match = _REFERENCE.match(target)
    if match is None:
        return target
    location = run.locations.get(match.group(1))
    if location is None:
        raise bad_request(f"Content-ID Reference: '${match.group(1)}' does not name a written row.")
    return location + target[match.end() :]


def _resolve_links(run: _Run, body: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _resolve(run, value)
        if isinstance(value, str) and (key.endswith("@odata.bind") or key == "@odata.id")
        else value
        for key, value in body.items()
    }


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _service_root(request: Request) -> str:
    """`/api/data/v9.2`: the root a relative URL in a batch is resolved against, the batch's own."""
    raw_path: bytes = request.scope["raw_path"]
    return raw_path.decode("latin-1").rsplit("/", 1)[0]
