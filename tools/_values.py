"""Write values checked against the table's metadata before anything is sent.

Keys are column logical names. A lookup is `{"table": "account", "id": "<guid>"}` (or just the id when the
column can point at one table only) and becomes the `<navigation property>@odata.bind` Dataverse expects; a
choice is its value or its label. An unknown column, a wrong type, a value too long or out of range, or a
column that cannot be written in this operation is a tool error naming the column, and nothing is sent.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from dataverse import Choice, Column, DataverseClient, TableMetadata

from ._errors import unknown_columns
from ._policy import TableAccess

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _problem(table: TableMetadata, column: Column, text: str) -> ToolError:
    return ToolError(f"Column '{column.logical_name}' of {table.logical_name}: {text}.")


def _choice(table: TableMetadata, column: Column, value: Any, choices: tuple[Choice, ...]) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and any(choice.value == value for choice in choices):
        return value
    if isinstance(value, str):
        for choice in choices:
            if choice.label.lower() == value.strip().lower() or str(choice.value) == value.strip():
                return choice.value
    valid = ", ".join(f"{choice.value}={choice.label}" for choice in choices)
    raise _problem(table, column, f"{value!r} is not one of its choices ({valid})")


async def _lookup(
    client: DataverseClient, access: TableAccess, table: TableMetadata, column: Column, value: Any
) -> tuple[str, str | None]:
    """(`<navigation>@odata.bind`, `/<entity set>(<id>)` or None to clear); the target table must be allowed."""
    if value is None:
        target_name = column.targets[0] if column.targets else ""
        navigation = table.navigation_property(column.logical_name, target_name)
        if navigation is None:
            raise _problem(table, column, "cannot be cleared through this server")
        return f"{navigation}@odata.bind", None
    if isinstance(value, str) and len(column.targets) == 1:
        value = {"table": column.targets[0], "id": value}
    if not isinstance(value, dict) or set(value) != {"table", "id"}:
        targets = " or ".join(column.targets)
        raise _problem(table, column, f'give a lookup as {{"table": "{targets}", "id": "<row id>"}}')
    target = await client.resolve_table(str(value["table"]))
    access.check(target.logical_name)  # binding to a row reads nothing, but writes into that table's relationships
    if target.logical_name not in column.targets:
        raise _problem(table, column, f"points at {' or '.join(column.targets)}, not {target.logical_name}")
    try:
        row_id = uuid.UUID(str(value["id"]))
    except ValueError:
        raise _problem(table, column, f"{value['id']!r} is not a row id (a GUID)") from None
    navigation = table.navigation_property(column.logical_name, target.logical_name)
    if navigation is None:
        raise _problem(table, column, f"has no navigation property to {target.logical_name}")
    return f"{navigation}@odata.bind", f"/{target.entity_set_name}({row_id})"


def _scalar(table: TableMetadata, column: Column, value: Any) -> Any:
    kind = column.attribute_type
    if value is None:
        return None
    if kind in ("String", "Memo", "EntityName"):
        if not isinstance(value, str):
            raise _problem(table, column, f"expects text, not {type(value).__name__}")
        if column.max_length is not None and len(value) > column.max_length:
            raise _problem(table, column, f"at most {column.max_length} characters, got {len(value)}")
        return value
    if kind in ("Integer", "BigInt", "Decimal", "Double", "Money"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _problem(table, column, f"expects a number, not {value!r}")
        if kind in ("Integer", "BigInt") and not float(value).is_integer():
            raise _problem(table, column, f"expects a whole number, not {value!r}")
        if (column.min_value is not None and value < column.min_value) or (
            column.max_value is not None and value > column.max_value
        ):
            raise _problem(
                table, column, f"{value} is outside the allowed range {column.min_value}..{column.max_value}"
            )
        return int(value) if kind in ("Integer", "BigInt") else value
    if kind == "Boolean":
        if not isinstance(value, bool):
            raise _problem(table, column, f"expects true or false, not {value!r}")
        return value
    if kind == "DateTime":
        return _datetime(table, column, value)
    if kind == "Uniqueidentifier":
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise _problem(table, column, f"{value!r} is not a GUID") from None
    raise _problem(table, column, f"columns of type {kind} cannot be written through this server")


def _datetime(table: TableMetadata, column: Column, value: Any) -> str:
    if not isinstance(value, str):
        raise _problem(table, column, "expects an ISO 8601 date such as 2026-01-31 or 2026-01-31T09:00:00Z")
    text = value.strip()
    try:
        if _ISO_DATE.match(text):
            date.fromisoformat(text)
            return text
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _problem(table, column, f"{value!r} is not an ISO 8601 date or date and time") from None
    if moment.tzinfo is None:
        raise _problem(table, column, f"{value!r} needs a time zone, e.g. {text}Z")
    return text if column.format != "DateOnly" else moment.date().isoformat()


async def request_body(
    client: DataverseClient, access: TableAccess, table: TableMetadata, values: dict[str, Any], *, creating: bool
) -> dict[str, Any]:
    """The JSON body for a create or update of `table` with `values`, fully checked (lookups against the policy)."""
    if not values:
        raise ToolError("values is empty: give at least one column and its value.")
    unknown = [name for name in values if name.lower() not in table.columns]
    if unknown:
        raise unknown_columns(table, unknown)
    body: dict[str, Any] = {}
    choices: dict[str, tuple[Choice, ...]] | None = None
    for name, value in values.items():
        column = table.columns[name.lower()]
        operation = "create" if creating else "update"
        if not column.is_odata_property or not (column.is_valid_for_create if creating else column.is_valid_for_update):
            raise _problem(table, column, f"cannot be set on {operation} (read-only or computed)")
        if column.is_lookup:
            key, reference = await _lookup(client, access, table, column, value)
            body[key] = reference
        elif column.attribute_type in ("Picklist", "State", "Status") or column.type_name == "MultiSelectPicklistType":
            if value is None:
                body[column.logical_name] = None
                continue
            choices = choices if choices is not None else await client.choices(table.logical_name)
            options = choices.get(column.logical_name, ())
            if column.type_name == "MultiSelectPicklistType":
                items = value if isinstance(value, list) else [value]
                body[column.logical_name] = ",".join(str(_choice(table, column, item, options)) for item in items)
            else:
                body[column.logical_name] = _choice(table, column, value, options)
        else:
            body[column.logical_name] = _scalar(table, column, value)
    return body
