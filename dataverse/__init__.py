"""Async client for the Dataverse Web API: requests, retries, errors, OData building, metadata, discovery."""

from ._client import DataverseClient, Page, Row, RowKey, UpsertMode, WhoAmI, Written
from ._discovery import (
    DEFAULT_DISCOVERY_URL,
    DISCOVERY_BY_AUTHORITY,
    DISCOVERY_HOSTS,
    Instance,
    discovery_scope,
    list_instances,
)
from ._errors import (
    NOTHING_WRITTEN,
    AuthenticationFailed,
    DataverseError,
    DuplicateRecord,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RequestTimeout,
    ServiceError,
    ServiceUnavailable,
    Throttled,
    TransportError,
    UnknownTable,
    ValidationFailed,
)
from ._fetchxml import fetch_entity
from ._http import ConnectionSettings, build_http_client
from ._metadata import AlternateKey, Choice, Column, Relationship, TableMetadata, TableSummary
from ._odata import Expand, InvalidQuery, ODataQuery, equals, literal
from ._retry import RetryPolicy
from ._tokens import AccessToken, StaticTokenProvider, TokenProvider

__all__ = [
    "DEFAULT_DISCOVERY_URL",
    "DISCOVERY_BY_AUTHORITY",
    "DISCOVERY_HOSTS",
    "NOTHING_WRITTEN",
    "AccessToken",
    "AlternateKey",
    "AuthenticationFailed",
    "Choice",
    "Column",
    "ConnectionSettings",
    "DataverseClient",
    "DataverseError",
    "DuplicateRecord",
    "Expand",
    "Instance",
    "InvalidQuery",
    "NotFound",
    "ODataQuery",
    "Page",
    "PermissionDenied",
    "PreconditionFailed",
    "Relationship",
    "RequestTimeout",
    "RetryPolicy",
    "Row",
    "RowKey",
    "ServiceError",
    "ServiceUnavailable",
    "StaticTokenProvider",
    "TableMetadata",
    "TableSummary",
    "Throttled",
    "TokenProvider",
    "TransportError",
    "UnknownTable",
    "UpsertMode",
    "ValidationFailed",
    "WhoAmI",
    "Written",
    "build_http_client",
    "discovery_scope",
    "equals",
    "fetch_entity",
    "list_instances",
    "literal",
]
