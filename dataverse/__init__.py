"""Async client for the Dataverse Web API: requests, retries, errors, OData building, metadata, discovery."""

from ._client import DataverseClient, Page, Position, Row, RowKey, UpsertMode, WhoAmI, Written
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
    WriteRefused,
    end_sentence,
)
from ._fetchxml import FetchQuery
from ._http import ConnectionSettings, build_http_client
from ._metadata import AlternateKey, Choice, Column, Relationship, TableMetadata, TableSummary, resolve_table_name
from ._odata import Expand, InvalidQuery, ODataQuery, equals, filter_paths, literal, rewrite_lookup_names
from ._retry import RetryPolicy
from ._single_flight import SingleFlight
from ._tokens import AccessToken, StaticTokenProvider, TokenProvider
from ._transport import api_base_url, is_loopback

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
    "FetchQuery",
    "Instance",
    "InvalidQuery",
    "NotFound",
    "ODataQuery",
    "Page",
    "PermissionDenied",
    "Position",
    "PreconditionFailed",
    "Relationship",
    "RequestTimeout",
    "RetryPolicy",
    "Row",
    "RowKey",
    "ServiceError",
    "ServiceUnavailable",
    "SingleFlight",
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
    "WriteRefused",
    "Written",
    "api_base_url",
    "build_http_client",
    "discovery_scope",
    "end_sentence",
    "equals",
    "filter_paths",
    "is_loopback",
    "list_instances",
    "literal",
    "resolve_table_name",
    "rewrite_lookup_names",
]
