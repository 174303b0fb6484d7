"""Write values checked against the table's metadata before anything is sent.

Keys are column logical names. A lookup is `{"table": "account", "id": "<guid>"}` (or just the id when the
column can point at one table only) and becomes the `<navigation property>@odata.bind` Dataverse expects; a
choice is its value or its label. An unknown column, a wrong type, a value too long or out of range, or a
column that cannot be written in this operation is a tool error naming the column, and nothing is sent.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

from mcp.server.mcpserver.exceptions import ToolError

from dataverse import Choice, Column, DataverseClient, TableMetadata

from ._errors import shown, unknown_columns
from ._policy import TableAccess

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A number given as a string: plain decimal notation only (no exponent, NaN or Infinity), so that it converts
# exactly or is refused.
_PLAIN_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_WHOLE_NUMBERS: Final = ("Integer", "BigInt")
_NUMBERS: Final = (*_WHOLE_NUMBERS, "Decimal", "Double", "Money")


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
    raise _problem(table, column, f"{shown(value)} is not one of its choices ({valid})")


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
        raise _problem(table, column, f"{shown(value['id'])} is not a row id (a GUID)") from None
    navigation = table.navigation_property(column.logical_name, target.logical_name)
    if navigation is None:
        raise _problem(table, column, f"has no navigation property to {target.logical_name}")
    return f"{navigation}@odata.bind", f"/{target.entity_set_name}({row_id})"


def _scalar(table: TableMetadata, column: Column, value: Any, options: tuple[Choice, ...] = ()) -> Any:
    """A plain column's value as the Web API takes it; `options` are a yes/no column's two labelled values."""
    kind = column.attribute_type
    if value is None:
        return None
    if kind in ("String", "Memo", "EntityName"):
        if not isinstance(value, str):
            raise _problem(table, column, f"expects text, not {shown(value)}")
        if column.max_length is not None and len(value) > column.max_length:
            raise _problem(table, column, f"at most {column.max_length} characters, got {len(value)}")
        return value
    if kind in _NUMBERS:
        return _number(table, column, value)
    if kind == "Boolean":
        return _boolean(table, column, value, options)
    if kind == "DateTime":
        return _datetime(table, column, value)
    if kind == "Uniqueidentifier":
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise _problem(table, column, f"{shown(value)} is not a GUID") from None
    raise _problem(table, column, f"columns of type {kind} cannot be written through this server")


def _number(table: TableMetadata, column: Column, value: Any) -> int | float:
    """A JSON number, or a string holding one that converts exactly ("42", "12.50"): never a rounded value."""
    whole = column.attribute_type in _WHOLE_NUMBERS
    expected = "a whole number such as 42" if whole else "a number such as 12.50"
    number: int | float
    if isinstance(value, str) and _PLAIN_NUMBER.fullmatch(value.strip()):
        exact = Decimal(value.strip())
        if whole and exact != exact.to_integral_value():
            raise _problem(table, column, f"expects {expected}, not {shown(value)}")
        number = int(exact) if whole else float(exact)
        # A double keeps about 15 significant digits: more would be sent as another number.
        if not whole and math.isfinite(number) and Decimal(repr(number)) != exact:
            raise _problem(table, column, f"{shown(value)} has more digits than can be sent exactly (15 at most)")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    else:
        raise _problem(table, column, f"expects {expected}, not {shown(value)}")
    if not math.isfinite(number) or (whole and not float(number).is_integer()):
        raise _problem(table, column, f"expects {expected}, not {shown(value)}")
    if (column.min_value is not None and number < column.min_value) or (
        column.max_value is not None and number > column.max_value
    ):
        raise _problem(
            table, column, f"{shown(value)} is outside the allowed range {column.min_value}..{column.max_value}"
        )
    return int(number) if whole else number


def _boolean(table: TableMetadata, column: Column, value: Any, options: tuple[Choice, ...]) -> bool:
    """true or false, also as "true"/"false", or one of the column's own options by label or value ("Yes", 1)."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("true", "false"):
        return text == "true"
    for choice in options:
        if text in (choice.label.lower(), str(choice.value)) or (type(value) is int and value == choice.value):
            return bool(choice.value)
    labels = f" ({', '.join(f'{choice.value}={choice.label}' for choice in options)})" if options else ""
    raise _problem(table, column, f"expects true or false{labels}, not {shown(value)}")


def _datetime(table: TableMetadata, column: Column, value: Any) -> str:
    if not isinstance(value, str):
        raise _problem(
            table, column, f"expects an ISO 8601 date such as 2026-01-31 or 2026-01-31T09:00:00Z, not {shown(value)}"
        )
    text = value.strip()
    try:
        if _ISO_DATE.match(text):
            date.fromisoformat(text)
            return text
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _problem(table, column, f"{shown(value)} is not an ISO 8601 date or date and time") from None
    if moment.tzinfo is None:
        raise _problem(table, column, f"{shown(value)} needs a time zone, e.g. {text[:40]}Z")
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
            if column.attribute_type == "Boolean" and not isinstance(value, bool | None):  # by its label, maybe
                choices = choices if choices is not None else await client.choices(table.logical_name)
            options = choices.get(column.logical_name, ()) if choices is not None else ()
            body[column.logical_name] = _scalar(table, column, value, options)
    return body
