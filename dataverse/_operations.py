"""Calling actions and functions: parameters checked against their declaration, then sent as the Web API takes them.

    action, unbound      POST WinOpportunity                                  {"Status": 3, "OpportunityClose": {...}}
    action, bound        POST leads(<id>)/Microsoft.Dynamics.CRM.QualifyLead  {"CreateAccount": true, ...}
    action, set-bound    POST solutions/Microsoft.Dynamics.CRM.ExportTranslation
    function             GET  RetrieveTotalRecordCount(EntityNames=@p1)?@p1=["account","contact"]
    function, bound      GET  systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()

("Use Web API actions", "Use Web API functions".) Every parameter is checked before anything is sent: no unknown
name, no missing required one, each value of its declared type. A function's values travel as parameter aliases
(`@p1`), each an OData literal or JSON value percent-encoded whole, so no value can change the URL's meaning; the
operation and parameter names come from the service's own declaration and are checked identifiers too.

An entity-typed parameter takes an `EntityReference` (a row by table and id: `{"@odata.type": ..., "<key>": id}`
in an action's body, `{"@odata.id": "accounts(<id>)"}` in a function's alias) or, in an action, `EntityValues` (a
new row's values, `@odata.bind` included, as a create's body). Its table must be the declared one or derive from it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import anyio
import httpx2

from ._csdl import SERVICE_NAMESPACE, CsdlReader, Operation, OperationCatalog, OperationType, Parameter
from ._errors import write_outcome
from ._odata import InvalidQuery, guid, identifier, literal
from ._transport import Transport

if TYPE_CHECKING:
    from ._client import DataverseClient

MAX_ITEMS: Final = 1000  # values of one collection parameter
ANNOTATED: Final = {"Prefer": 'odata.include-annotations="*"'}  # rows returned carry formatted values
FEED_SIZE: Final = 256 * 1024  # bytes of $metadata handed to the parser's thread at a time
_RANGES: Final = {
    "Edm.Byte": (0, 255),
    "Edm.SByte": (-128, 127),
    "Edm.Int16": (-(2**15), 2**15 - 1),
    "Edm.Int32": (-(2**31), 2**31 - 1),
    "Edm.Int64": (-(2**63), 2**63 - 1),
}
_NUMBERS: Final = frozenset({"Edm.Decimal", "Edm.Double", "Edm.Single"})
_WORDS: Final = {
    "Edm.String": "text",
    "Edm.Boolean": "true or false",
    "Edm.Guid": "a GUID",
    "Edm.DateTimeOffset": "an ISO 8601 date and time with a time zone",
    "Edm.Date": "an ISO 8601 date",
    "Edm.Binary": "base64 text",
}


class InvalidParameters(InvalidQuery):
    """Parameters that do not fit an operation's declaration; the message lists the declared ones."""

    def __init__(self, operation: Operation, problems: Sequence[str]) -> None:
        declared = ", ".join(str(parameter) for parameter in operation.parameters) or "none"
        super().__init__(
            f"{operation.name}: {'; '.join(problems)}. Its parameters: {declared}.",
            hint="Give each parameter by its declared name, with a value of its type.",
        )
        self.problems = tuple(problems)


@dataclass(frozen=True)
class EntityReference:
    """An existing row, as an entity-typed parameter's value."""

    table: str  # logical name
    id: uuid.UUID


@dataclass(frozen=True)
class EntityValues:
    """A new row's values (a create's body: logical names, `@odata.bind`), as an action's entity-typed parameter."""

    table: str  # logical name
    values: Mapping[str, Any]


def check_parameters(operation: Operation, catalog: OperationCatalog, given: Mapping[str, Any]) -> dict[str, Any]:
    """`given` checked against the declaration: every name declared, every required one there, each value typed.

    Raises InvalidParameters naming every problem at once, and the declared parameters with their types.
    """
    problems = [f"no parameter {name!r}" for name in given if operation.parameter(name) is None]
    checked: dict[str, Any] = {}
    for parameter in operation.parameters:
        if parameter.name not in given:
            if not parameter.nullable:
                problems.append(f"{parameter.name} is required")
            continue
        try:
            checked[parameter.name] = _checked(operation, catalog, parameter, given[parameter.name])
        except ValueError as problem:
            problems.append(f"{parameter.name} {problem}")
    if problems:
        raise InvalidParameters(operation, problems)
    return checked


def _checked(operation: Operation, catalog: OperationCatalog, parameter: Parameter, value: Any) -> Any:
    kind = parameter.type
    if value is None:
        if not parameter.nullable:
            raise ValueError("is required and may not be null")
        return None
    if kind.collection:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expects a list of {_expected(kind, catalog)}")
        if len(value) > MAX_ITEMS:
            raise ValueError(f"takes at most {MAX_ITEMS} values")
        single = OperationType(kind.name, kind.kind)
        return [_value(operation, catalog, single, item) for item in value]
    return _value(operation, catalog, kind, value)


def _value(operation: Operation, catalog: OperationCatalog, kind: OperationType, value: Any) -> Any:
    if kind.kind == "entity":
        if isinstance(value, EntityValues) and not operation.is_action:
            raise ValueError("takes an existing row ({table, id}) in a function")
        if not isinstance(value, EntityReference | EntityValues):
            raise ValueError(f"expects a row of {kind.name}")
        if not catalog.derives_from(value.table, kind.name):
            raise ValueError(f"expects a row of {kind.name}, not of {value.table}")
        return value
    if kind.kind == "enum":
        members = catalog.enum_types.get(kind.name, {})
        for member, number in members.items():
            if (isinstance(value, str) and value.strip().lower() == member.lower()) or (
                type(value) is int and value == number
            ):
                return member
        raise ValueError(f"expects one of {', '.join(members)}, not {_shown(value)}")
    if kind.kind == "complex":
        if not isinstance(value, dict):
            raise ValueError(f"expects a {kind.name} object")
        return value
    return _primitive(kind.name, value)


def _primitive(type_name: str, value: Any) -> Any:
    expected = _expected(OperationType(type_name, "primitive"), None)
    if type_name in _RANGES:
        low, high = _RANGES[type_name]
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"expects {expected}, not {_shown(value)}")
        return value
    if type_name in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"expects {expected}, not {_shown(value)}")
        return value
    if type_name == "Edm.Boolean":
        if not isinstance(value, bool):
            raise ValueError(f"expects {expected}, not {_shown(value)}")
        return value
    if not isinstance(value, str) or type_name not in _WORDS:
        raise ValueError(f"expects {expected}, not {_shown(value)}")
    try:
        if type_name == "Edm.Guid":
            return str(uuid.UUID(value.strip().strip("{}")))
        if type_name == "Edm.DateTimeOffset":
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError
            return moment.isoformat().replace("+00:00", "Z")
        if type_name == "Edm.Date":
            return date.fromisoformat(value.strip()).isoformat()
        if type_name == "Edm.Binary":
            base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError(f"expects {expected}, not {_shown(value)}") from None
    return value


def _expected(kind: OperationType, catalog: OperationCatalog | None) -> str:
    if kind.name in _RANGES:
        return f"a whole number ({kind.name})"
    if kind.name in _NUMBERS:
        return f"a number ({kind.name})"
    if kind.kind == "entity":
        return f"{kind.name} rows"
    if kind.kind == "enum" and catalog is not None:
        return "values of " + ", ".join(catalog.enum_types.get(kind.name, {}))
    return _WORDS.get(kind.name, kind.name)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:60]}…"


# -- the request -------------------------------------------------------------------------------------------------


def operation_path(operation: Operation, entity_set: str | None, row_id: uuid.UUID | None) -> str:
    """`Name`, `<set>(<id>)/Microsoft.Dynamics.CRM.Name` or `<set>/Microsoft.Dynamics.CRM.Name` (no parameters)."""
    name = identifier(operation.name, "operation")
    if operation.binding is None:
        return name  # "Functions that aren't bound must not use the full name"
    if entity_set is None:
        raise InvalidQuery(f"{operation.name} is bound: give its table.")
    target = identifier(entity_set, "entity set")
    if operation.bound_to_row:
        if row_id is None:
            raise InvalidQuery(f"{operation.name} is bound to a row of {operation.table}: give its id.")
        target = f"{target}({row_id})"
    elif row_id is not None:
        raise InvalidQuery(f"{operation.name} is bound to the set of {operation.table}: leave out id.")
    return f"{target}/{SERVICE_NAMESPACE}.{name}"


def function_call(path: str, values: Mapping[str, Any], literals: Mapping[str, str]) -> str:
    """`path(A=@p1,B=@p2)?@p1=...&@p2=...`: each value an alias, percent-encoded whole (`literals` by name)."""
    names = [identifier(name, "parameter") for name in values]
    arguments = ",".join(f"{name}=@p{index}" for index, name in enumerate(names, 1))
    query = "&".join(f"@p{index}={quote(literals[name], safe='')}" for index, name in enumerate(names, 1))
    return f"{path}({arguments})" + (f"?{query}" if query else "")


def function_literal(kind: OperationType, value: Any, reference: Mapping[EntityReference, str]) -> str:
    """A checked value as a function's alias takes it: an OData literal, or JSON for collections and objects.

    `reference` gives each row reference's `<entity set>(<id>)`.
    """
    if value is None:
        return "null"
    if kind.collection:
        return json.dumps([_json_value(item, reference) for item in value], separators=(",", ":"))
    if kind.kind == "entity" or kind.kind == "complex":
        return json.dumps(_json_value(value, reference), separators=(",", ":"))
    if kind.kind == "enum":
        return f"{SERVICE_NAMESPACE}.{identifier(kind.name, 'type')}'{identifier(str(value), 'member')}'"
    if kind.name == "Edm.String":
        return literal(str(value))
    if kind.name == "Edm.Binary":
        return f"binary'{value}'"
    if isinstance(value, bool | int | float):
        return literal(value)
    return str(value)  # a checked GUID, date or date and time: plain in OData's URL syntax


def _json_value(value: Any, reference: Mapping[EntityReference, str]) -> Any:
    if isinstance(value, EntityReference):
        return {"@odata.id": reference[value]}
    return value


def action_body(values: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """An action's JSON body; an entity value carries its `@odata.type` (and a reference its key: `keys` gives each
    table's primary key column)."""

    def encoded(value: Any) -> Any:
        if isinstance(value, EntityReference):
            return {"@odata.type": f"{SERVICE_NAMESPACE}.{value.table}", keys[value.table]: str(value.id)}
        if isinstance(value, EntityValues):
            return {"@odata.type": f"{SERVICE_NAMESPACE}.{value.table}", **value.values}
        if isinstance(value, list):
            return [encoded(item) for item in value]
        return value

    return {name: encoded(value) for name, value in values.items()}


def entity_values(values: Mapping[str, Any]) -> list[EntityReference | EntityValues]:
    """Every row value among checked parameters (inside collections too)."""
    found: list[EntityReference | EntityValues] = []
    for value in values.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, EntityReference | EntityValues):
                found.append(item)
    return found


# -- reading the catalog and calling -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OperationResult:
    """What an operation answered: its JSON (a row, rows under `value`, a complex value), None for 204."""

    operation: Operation
    value: Any


async def read_catalog(transport: Transport) -> OperationCatalog:
    """The environment's operations, parsed from `$metadata` as it streams in, off the event loop."""
    catalogs: list[OperationCatalog] = []

    async def receive(response: httpx2.Response) -> None:
        reader = CsdlReader()  # one per attempt: a retried download starts over
        pending = bytearray()
        async for chunk in response.aiter_bytes():
            pending += chunk
            if len(pending) >= FEED_SIZE:
                data = bytes(pending)
                pending.clear()
                await anyio.to_thread.run_sync(reader.feed, data)
        reader.feed(bytes(pending))
        catalogs.append(await anyio.to_thread.run_sync(reader.close))

    await transport.send(
        "GET", transport.url("$metadata"), repeatability="safe", headers={"Accept": "application/xml"}, receive=receive
    )
    return catalogs[-1]


async def invoke(
    client: DataverseClient,
    name: str,
    parameters: Mapping[str, Any],
    *,
    table: str | None = None,
    row_id: str | uuid.UUID | None = None,
) -> OperationResult:
    """Call operation `name` (bound to `table`'s row `row_id`, or its set, or unbound) with checked parameters.

    A function is a read: retried like one, and sent by a read-only client. An action is a write that is never
    repeated once it may have run: its error then says to check its effect.
    """
    catalog = await client.operations()
    summary = await client.resolve_table(table) if table is not None else None
    key = guid(row_id) if row_id is not None else None
    operation = catalog.choose(name, summary.logical_name if summary else None, row=key is not None)
    values = check_parameters(operation, catalog, parameters)
    path = operation_path(operation, summary.entity_set_name if summary else None, key)
    rows = entity_values(values)
    tables = {row.table: await client.resolve_table(row.table) for row in rows}
    transport = client.transport
    if operation.is_action:
        body = action_body(values, {logical_name: found.primary_id for logical_name, found in tables.items()})
        unclear = (
            f"The action {operation.name} may or may not have run: check its effect before running it again "
            "(an action is never repeated after it may have run)."
        )
        with write_outcome(unclear):
            outcome = await transport.send(
                "POST", transport.url(path), repeatability="unsafe", json=body, headers=ANNOTATED
            )
    else:
        references = {
            row: f"{tables[row.table].entity_set_name}({row.id})" for row in rows if isinstance(row, EntityReference)
        }
        literals = {
            parameter.name: function_literal(parameter.type, values[parameter.name], references)
            for parameter in operation.parameters
            if parameter.name in values
        }
        url = transport.url(function_call(path, values, literals))
        outcome = await transport.send("GET", url, repeatability="safe", headers=ANNOTATED)
    response = outcome.response
    return OperationResult(operation, response.json() if response.status_code != 204 and response.content else None)
