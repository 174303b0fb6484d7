"""Errors the sandbox answers with: the Web API's body shape with Dataverse's codes, and Entra ID's.

Every Web API failure leaves a handler as a `WebApiError`; the application turns it into
`{"error": {"code": "0x80040217", "message": "..."}}` with the HTTP status Dataverse uses.
Codes and messages follow the Dataverse web service error codes reference. The identity provider's failures
are `OAuthError`s, answered in Entra's token-endpoint body with an AADSTS code.
"""

from __future__ import annotations

import time
import uuid
from typing import Final

from starlette.responses import JSONResponse

NOT_FOUND: Final = "0x80040217"  # ObjectDoesNotExist
DUPLICATE: Final = "0x80040237"  # DuplicateRecord: Cannot insert duplicate key
PRIVILEGE_DENIED: Final = "0x80040220"  # PrincipalPrivilegeDenied
ACCESS_DENIED: Final = "0x80048306"  # AccessCheckFailed: no access right on this record
CONCURRENCY_MISMATCH: Final = "0x80060882"  # ConcurrencyVersionMismatch
ODATA_ERROR: Final = "0x80060888"  # ODataException: bad syntax, an option used where it can't be
RESOURCE_NOT_FOUND: Final = "0x8006088a"  # no entity set, function or segment by that name; also 501s
UNKNOWN_PROPERTY: Final = "0x0"  # "Could not find a property named ...", as the troubleshooting page shows it
BAD_REQUEST: Final = "0x80040203"  # InvalidArgument
INVALID_VALUE: Final = "0x80044331"  # A value is out of range or of the wrong type
MAX_LENGTH: Final = "0x80044331"
THROTTLED: Final = "0x80072322"  # Number of requests exceeded the limit
UNAUTHORIZED: Final = "0x80072560"  # the caller is not a user of the organization
SERVICE_UNAVAILABLE: Final = "0x80040216"  # UnexpectedError, as the front end reports a 503
FETCH_XML_INVALID: Final = "0x80041103"  # QueryBuilderNoAttribute and FetchXML parse errors
INVALID_KEY: Final = "0x80060891"  # AlternateKey: no key with these attributes


class WebApiError(Exception):
    """A failure answered with Dataverse's error body and status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(table: str, row_id: str) -> WebApiError:
    return WebApiError(404, NOT_FOUND, f"{table} With Id = {row_id} Does Not Exist")


def not_found_by_key(table: str, key: str) -> WebApiError:
    return WebApiError(404, NOT_FOUND, f"A record with the specified key values does not exist in {table} entity")


def unknown_property(table: str, name: str) -> WebApiError:
    return WebApiError(
        400,
        UNKNOWN_PROPERTY,
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{table}'.",
    )


def resource_not_found(segment: str) -> WebApiError:
    return WebApiError(404, RESOURCE_NOT_FOUND, f"Resource not found for the segment '{segment}'.")


def not_implemented(message: str) -> WebApiError:
    """Something the service does that the sandbox does not emulate: 501, as the service answers what it lacks."""
    return WebApiError(501, RESOURCE_NOT_FOUND, message)


def bad_request(message: str) -> WebApiError:
    return WebApiError(400, ODATA_ERROR, message)


def invalid_value(message: str) -> WebApiError:
    return WebApiError(400, INVALID_VALUE, message)


def duplicate_key() -> WebApiError:
    return WebApiError(412, DUPLICATE, "A record with matching key values already exists.")


def etag_mismatch() -> WebApiError:
    return WebApiError(
        412,
        CONCURRENCY_MISMATCH,
        "The version of the existing record doesn't match the RowVersion property provided.",
    )


class OAuthError(Exception):
    """An error answered in Entra's token-endpoint shape."""

    def __init__(self, error: str, code: int, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.code, self.description, self.status = error, code, description, status

    @property
    def message(self) -> str:
        return f"AADSTS{self.code}: {self.description}"

    def response(self) -> JSONResponse:
        body = {
            "error": self.error,
            "error_description": self.message,
            "error_codes": [self.code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }
        return JSONResponse(body, status_code=self.status)
