"""The `$batch` wire format: a multipart/mixed request body, and the parts of a multipart/mixed answer.

As "Execute batch operations using the Web API" describes it (OData 4.0, 11.7): each request is a part of type
`application/http` with `Content-Transfer-Encoding: binary`, holding the request line, its headers and its JSON
body; the requests of a change set are the parts of one nested `multipart/mixed` part, each with a `Content-ID`.
The answer is built the same way, a change set's responses nested in their own part (or, when the change set
failed, the one response that failed it in its place). Lines end with CRLF as MIME requires; the parser also
accepts bare LF, as the page's examples are printed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ._errors import DataverseError

CRLF: Final = "\r\n"
_BOUNDARY: Final = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_STATUS_LINE: Final = re.compile(r"^HTTP/\d(?:\.\d)?\s+(\d{3})(?:\s+(.*))?$")


class MalformedBatch(DataverseError):
    """The service's answer to a `$batch` request could not be read as multipart/mixed."""

    hint = "The service's answer could not be read; read the rows to learn what was written."


@dataclass(frozen=True)
class BatchRequest:
    """One request inside a `$batch`: its method, URL (absolute, or `$<Content-ID>` of a change set's earlier
    request), headers and JSON body."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    content_id: str | None = None


@dataclass(frozen=True)
class BatchResponse:
    """One response inside a `$batch` answer; `content_id` is that of the request it answers, when given."""

    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    content_id: str | None = None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON (a 204 has none)."""
        try:
            return json.loads(self.body) if self.body.strip() else None
        except ValueError:
            return None


def encode_batch(items: Sequence[BatchRequest | Sequence[BatchRequest]]) -> tuple[str, bytes]:
    """The `Content-Type` and body of a `$batch` request; an item that is a sequence becomes one change set."""
    boundary = f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    for item in items:
        lines.append(f"--{boundary}")
        if isinstance(item, BatchRequest):
            lines += _request_part(item)
            continue
        change_set = f"changeset_{uuid.uuid4()}"
        lines += [f"Content-Type: multipart/mixed; boundary={change_set}", ""]
        for request in item:
            lines.append(f"--{change_set}")
            lines += _request_part(request)
        lines += [f"--{change_set}--", ""]
    lines += [f"--{boundary}--", ""]
    return f"multipart/mixed; boundary={boundary}", CRLF.join(lines).encode()


def _request_part(request: BatchRequest) -> list[str]:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if request.content_id is not None:
        lines.append(f"Content-ID: {request.content_id}")
    lines += ["", f"{request.method} {request.url} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    if request.body is None:
        return [*lines, "", ""]
    body = json.dumps(request.body, ensure_ascii=False, separators=(",", ":"))
    return [*lines, "Content-Type: application/json; type=entry", "", body]


def decode_batch(content_type: str, body: bytes) -> list[BatchResponse]:
    """The responses of a `$batch` answer in order, change sets' responses in their place; raises
    MalformedBatch."""
    return list(_responses(content_type, body))


def _responses(content_type: str, body: bytes) -> Iterator[BatchResponse]:
    for headers, content in _parts(content_type, body):
        part_type = headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            yield from _responses(part_type, content)
        else:
            yield _response(content, headers.get("content-id"))


def _parts(content_type: str, body: bytes) -> Iterator[tuple[dict[str, str], bytes]]:
    """Each part of a multipart body: its headers (names in lower case) and its content."""
    found = _BOUNDARY.search(content_type)
    if found is None or not content_type.lower().startswith("multipart/"):
        raise MalformedBatch(f"The answer to a $batch request is not multipart/mixed ({content_type[:60]!r}).")
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape((found.group(1) or found.group(2)).encode()) + rb"(--)?")
    pieces = delimiter.split(body)
    # split() yields: the preamble, then for each delimiter its `--` group (None unless closing) and what follows.
    closed = False
    for closing, piece in zip(pieces[1::2], pieces[2::2], strict=True):
        if closing:
            closed = True
            break
        yield _headers_and_content(piece)
    if not closed:
        raise MalformedBatch("The answer to a $batch request ended before its closing boundary.")


def _headers_and_content(piece: bytes) -> tuple[dict[str, str], bytes]:
    text = piece.split(b"\n", 1)[1] if b"\n" in piece else b""  # the rest of the delimiter line
    head, separator, content = _split_head(text)
    if not separator:
        raise MalformedBatch("A part of the $batch answer has no blank line after its headers.")
    return _header_lines(head), content


def _split_head(text: bytes) -> tuple[bytes, bytes, bytes]:
    """Headers, separator and content of a MIME part or HTTP message, whichever line ending it uses."""
    match = re.search(rb"\r?\n\r?\n", text)
    if text.startswith((b"\r\n", b"\n")):  # no headers at all
        return b"", b"\n", text.split(b"\n", 1)[1]
    if match is None:
        return text, b"", b""
    return text[: match.start()], match.group(0), text[match.end() :]


def _header_lines(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers


def _response(content: bytes, content_id: str | None) -> BatchResponse:
    """An `application/http` part's HTTP response."""
    content = content.lstrip(b"\r\n")
    status_line, _, rest = content.partition(b"\n")
    matched = _STATUS_LINE.match(status_line.decode("latin-1").strip())
    if matched is None:
        raise MalformedBatch("A part of the $batch answer does not start with an HTTP status line.")
    head, separator, body = _split_head(rest)
    headers = _header_lines(head) if separator or head.strip() else {}
    # A part's content runs to the CRLF before the next delimiter, which belongs to the delimiter.
    body = body.rstrip(b"\r\n") if separator else b""
    return BatchResponse(int(matched.group(1)), headers, body, content_id or headers.get("content-id"))
