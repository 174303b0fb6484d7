"""The `multipart/mixed` framing of `$batch`: parts, their headers, and the HTTP messages inside them.

As "Execute batch operations using the Web API" and OData 4.0 (11.7 Batch Requests) lay it out: a body is split
by `--<boundary>` lines and closed by `--<boundary>--`; each part has MIME headers, a blank line, then its
content; an `application/http` part (`Content-Transfer-Encoding: binary`) holds one HTTP request or response.
Refusals use the wording of the OData library the service runs where it is known, in its style elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from starlette.responses import Response

from ._errors import bad_request

_BOUNDARY: Final = re.compile(r"""boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))""", re.IGNORECASE)
_HEADER_NAMES: Final = {
    "odata-version": "OData-Version",
    "odata-entityid": "OData-EntityId",
    "etag": "ETag",
    "content-type": "Content-Type",
    "content-id": "Content-ID",
    "location": "Location",
    "preference-applied": "Preference-Applied",
    "retry-after": "Retry-After",
}
_SKIPPED_HEADERS: Final = {"content-length"}


@dataclass(frozen=True)
class Part:
    """One MIME part: its headers (names in lower case) and its content."""

    headers: dict[str, str]
    content: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass(frozen=True)
class HttpRequest:
    """The HTTP request an `application/http` part holds."""

    method: str
    target: str  # as written: an absolute URL, an absolute path, a path relative to the service root, or `$1...`
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name), None)


def boundary_of(content_type: str) -> str | None:
    """The `boundary` of a `multipart/mixed` content type, or None when it is not one."""
    if content_type.split(";", 1)[0].strip().lower() != "multipart/mixed":
        return None
    match = _BOUNDARY.search(content_type)
    return (match.group(1) or match.group(2)) if match else None


def split_parts(body: bytes, boundary: str) -> list[Part]:
    """The parts of a multipart body; the text before the first delimiter and after the last is ignored."""
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[Part] = []
    current: list[bytes] | None = None
    for line in body.splitlines(keepends=True):
        stripped = line.rstrip(b"\r\n").rstrip(b" \t")
        if stripped in (delimiter, delimiter + b"--"):
            if current is not None:
                parts.append(_read_part(b"".join(current)))
            if stripped == delimiter + b"--":
                return parts
            current = []
        elif current is not None:
            current.append(line)
    raise bad_request("Encountered an unexpected end of input while reading the batch payload.")


def _read_part(raw: bytes) -> Part:
    # The line break before a delimiter belongs to the delimiter, not to the part.
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    head, content = _split_head(raw)
    headers: dict[str, str] = {}
    for name, value in _header_lines(head):
        if name.lower() in headers:
            raise bad_request(
                f"The header '{name}' was specified multiple times. Each header must appear only once in a batch part."
            )
        headers[name.lower()] = value
    return Part(headers, content)


def _split_head(raw: bytes) -> tuple[bytes, bytes]:
    """Headers and content of a MIME part or HTTP message, split at the first blank line."""
    if raw.startswith((b"\r\n", b"\n")):
        return b"", raw.split(b"\n", 1)[1]
    match = re.search(rb"\r?\n\r?\n", raw)
    if match is None:
        return raw, b""
    return raw[: match.start()], raw[match.end() :]


def _header_lines(head: bytes) -> list[tuple[str, str]]:
    headers = []
    for line in head.decode("latin-1").splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise bad_request(f"The header line '{line}' in the batch payload is not of the form 'Name: value'.")
        headers.append((name.strip(), value.strip()))
    return headers


def read_http_request(content: bytes) -> HttpRequest:
    """The request line, headers and body of an `application/http` part."""
    head, body = _split_head(content.lstrip(b"\r\n"))
    request_line, _, header_text = head.decode("latin-1").partition("\n")
    request_line = request_line.strip()
    method, _, rest = request_line.partition(" ")
    target, _, version = rest.strip().rpartition(" ")
    if not method or not target or not version.startswith("HTTP/"):
        raise bad_request(
            f"The request line '{request_line}' is invalid. The request line at the start of each operation must "
            "have the format 'HttpMethod RequestUrl HttpVersion'."
        )
    if version != "HTTP/1.1":
        raise bad_request(
            f"The HTTP version '{version}' used in a batch operation request or response is not valid. "
            "The value must be 'HTTP/1.1'."
        )
    return HttpRequest(method.upper(), target.strip(), _header_lines(header_text.encode("latin-1")), body.strip())


def http_part(response: Response, content_id: str | None) -> bytes:
    """An `application/http` part holding `response`, as the service writes each answer in a batch."""
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        head.append(f"Content-ID: {content_id}")
    status = response.status_code
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    lines = [f"HTTP/1.1 {status} {phrase}".rstrip(), "OData-Version: 4.0"]
    for name, value in response.headers.items():
        if name not in _SKIPPED_HEADERS and name != "odata-version":
            lines.append(f"{_HEADER_NAMES.get(name, name)}: {value}")
    body = bytes(response.body)
    return ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def multipart(boundary: str, parts: list[tuple[str, bytes]]) -> bytes:
    """A multipart body of `(content type, content)` parts; an `application/http` content carries its own head."""
    chunks = []
    for content_type, content in parts:
        chunks.append(f"--{boundary}\r\n".encode("latin-1"))
        if content_type != "application/http":
            chunks.append(f"Content-Type: {content_type}\r\n\r\n".encode("latin-1"))
        chunks.append(content + b"\r\n")
    chunks.append(f"--{boundary}--".encode("latin-1"))
    return b"".join(chunks)
