"""Errors the Dataverse client raises: one tree, mapped once from HTTP status and Dataverse error code.

    DataverseError              base of everything this package raises
      TransportError            no usable response: connection refused or dropped, TLS
        RequestTimeout          connect or read timeout
      ServiceError              Dataverse answered with an error
        AuthenticationFailed    401: token missing, expired or for another resource
        PermissionDenied        403: missing privilege or no access to the record
        NotFound                404 / 0x80040217: no such row, table or key
        PreconditionFailed      412 / 0x80060882: the row changed since that etag
        DuplicateRecord         0x80040237: a row with that id or alternate key exists
        ValidationFailed        400: bad value, unknown column, malformed query
          SearchDisabled        0x80048d0b: Dataverse search is turned off for the environment
          ChangeTokenExpired    0x80044352: the changes since that delta token are no longer kept
          ChangeTrackingOff     0x80072491: the table's changes are not tracked
        Throttled               429 after the retry budget
        ServiceUnavailable      500, 502, 503, 504 after the retries
      UnknownTable              no table by that name; knows the closest names
      WriteRefused              a write through a read-only client: refused before anything was sent

Messages are for people: what failed, Dataverse's code and message, what a failed write did and did not write,
what to do next. They never hold a token or a URL's query values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

# Dataverse error codes: the service writes them as hex ("0x80040217") or as a signed decimal ("-2147220969").
RECORD_NOT_FOUND: Final = 0x80040217
DUPLICATE_RECORD: Final = 0x80040237
CONCURRENCY_MISMATCH: Final = 0x80060882
PRIVILEGE_DENIED: Final = 0x80040220
ACCESS_DENIED: Final = 0x80048306
THROTTLING_CODES: Final = frozenset({0x80072322, 0x80072321, 0x80072326})
SEARCH_DISABLED: Final = 0x80048D0B
EXPIRED_VERSION_STAMP: Final = 0x80044352
CHANGE_TRACKING_NOT_ENABLED: Final = 0x80072491

NOTHING_WRITTEN: Final = "Nothing was written."  # what a write that certainly did not run says


def normalize_code(code: object) -> int | None:
    """A Dataverse error code as an unsigned 32-bit number, whichever form the service used."""
    if isinstance(code, int):
        return code & 0xFFFFFFFF
    if not isinstance(code, str) or not code.strip():
        return None
    text = code.strip()
    try:
        number = int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None
    return number & 0xFFFFFFFF


def format_code(code: int | None) -> str | None:
    return None if code is None else f"0x{code:08x}"


def end_sentence(text: str) -> str:
    """`text` ending as a sentence does, so that another can follow it."""
    # The service's messages often lack the final period ("... Does Not Exist").
    text = text.strip()
    return text if not text or text.rstrip("'\")").endswith((".", "!", "?")) else f"{text}."


class DataverseError(Exception):
    """Base class of every error raised by the Dataverse client."""

    hint = "Check the request and try again."

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
        # A write that failed unclearly (dropped connection, timeout, 5xx) may have been carried out all the same.
        self.may_have_written = False
        # What a failed write did and did not write, in words; set by the client's write methods.
        self.written: str | None = None

    def _parts(self) -> str:
        sentences = (end_sentence(part or "") for part in (self.message, self.written, self.hint))
        return " ".join(sentence for sentence in sentences if sentence)

    def __str__(self) -> str:
        return self._parts()


class TransportError(DataverseError):
    """No usable response: the connection failed, was dropped, or TLS failed."""

    hint = "Check that the environment URL is right and reachable (proxy, firewall, VPN), then try again."


class RequestTimeout(TransportError):
    """The environment did not connect or answer within the configured timeout."""

    hint = "The environment is slow or unreachable; try again, or raise the timeout."


class ServiceError(DataverseError):
    """Dataverse answered with an error status and body."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.request_id = request_id

    @property
    def code_text(self) -> str | None:
        return format_code(self.code)

    def __str__(self) -> str:
        code = f" ({self.code_text})" if self.code is not None else ""
        return f"Dataverse answered {self.status}{code}: {self._parts()}"


class AuthenticationFailed(ServiceError):
    hint = "The access token was refused: sign in again or check the app registration and the environment URL."


class PermissionDenied(ServiceError):
    hint = "Your security role does not allow this; ask an administrator for the privilege or use another account."


class NotFound(ServiceError):
    hint = "Check the id or key; the row may have been deleted or may not be visible to you."


class PreconditionFailed(ServiceError):
    hint = "The row changed since you read it: read it again, then retry with the new etag."


class DuplicateRecord(ServiceError):
    hint = "A row with the same id or alternate key already exists: update it instead of creating it."


class ValidationFailed(ServiceError):
    hint = "Fix the named column or query part; describe the table to see valid columns and values."


class SearchDisabled(ValidationFailed):
    """Dataverse search is turned off for the environment ("Search for Dataverse records", error when search is
    not enabled)."""

    hint = (
        "An administrator turns it on in the Power Platform admin center: the environment's Settings > Product > "
        "Features > Dataverse search."
    )


class ChangeTokenExpired(ValidationFailed):
    """The service no longer keeps the changes since that delta token ("Use change tracking to synchronize data
    with external systems": tokens older than ExpireChangeTrackingInDays)."""

    hint = (
        "The environment keeps changes for a limited time (ExpireChangeTrackingInDays, 7 days by default): "
        "start again with a new token, and read the table if you need its current state."
    )


class ChangeTrackingOff(ValidationFailed):
    """The table's changes are not tracked (ChangeTrackingNotEnabledForEntity, Dataverse's error code reference)."""

    hint = "A maker turns on Track changes in the table's advanced properties; until then, read changes by date."


class Throttled(ServiceError):
    hint = "Dataverse's service protection limits were hit; wait a minute and try again with fewer requests."

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServiceUnavailable(ServiceError):
    hint = "Dataverse is temporarily unavailable; try again in a moment."


class UnknownTable(DataverseError):
    """No table has that logical, entity set or display name."""

    def __init__(self, name: str, closest: Sequence[str]) -> None:
        suggestion = f" Did you mean {', '.join(repr(candidate) for candidate in closest)}?" if closest else ""
        super().__init__(f"No table named {name!r}.{suggestion}", hint="Use list_tables to see the tables.")
        self.name = name
        self.closest = tuple(closest)


class WriteRefused(DataverseError):
    """A request that may write (anything but GET and HEAD) through a read-only client; nothing was sent."""

    hint = "Writes are turned off for this server; ask its administrator if you need them."


def error_from_response(
    status: int, body: Any, *, request_id: str | None = None, retry_after: float | None = None
) -> ServiceError:
    """The exception for an error response, from its status and its Dataverse error code."""
    error = body.get("error") if isinstance(body, dict) else None
    code = normalize_code(error.get("code")) if isinstance(error, dict) else None
    message = str(error.get("message") or "").strip() if isinstance(error, dict) else ""
    message = message or f"HTTP {status} with no error details."
    arguments: dict[str, Any] = {"status": status, "code": code, "request_id": request_id}
    if code == DUPLICATE_RECORD:
        return DuplicateRecord(message, **arguments)
    if code == CONCURRENCY_MISMATCH:
        return PreconditionFailed(message, **arguments)
    if status == 429 or code in THROTTLING_CODES:
        return Throttled(message, retry_after=retry_after, **arguments)
    if status == 401:
        return AuthenticationFailed(message, **arguments)
    if status == 403 or code in (PRIVILEGE_DENIED, ACCESS_DENIED):
        return PermissionDenied(message, **arguments)
    if status == 404 or code == RECORD_NOT_FOUND:
        return NotFound(message, **arguments)
    if status == 412:
        return PreconditionFailed(message, **arguments)
    if status in (500, 502, 503, 504):
        return ServiceUnavailable(message, **arguments)
    if code == SEARCH_DISABLED:
        return SearchDisabled(message, **arguments)
    if code == EXPIRED_VERSION_STAMP:
        return ChangeTokenExpired(message, **arguments)
    if code == CHANGE_TRACKING_NOT_ENABLED:
        return ChangeTrackingOff(message, **arguments)
    return ValidationFailed(message, **arguments)


@contextmanager
def write_outcome(unclear: str = NOTHING_WRITTEN) -> Iterator[None]:
    """A failure here says what was written: `unclear` if the write may have been carried out, else nothing."""
    try:
        yield
    except DataverseError as error:
        if error.written is None:
            error.written = unclear if error.may_have_written else NOTHING_WRITTEN
        raise
