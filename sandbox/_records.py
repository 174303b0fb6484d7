"""Rows between their stored form and the Web API's JSON: rendering with annotations, and reading a request body.

Rendering follows what Dataverse returns: lookups as `_<name>_value`, `@odata.etag` from the row version,
and, when `Prefer: odata.include-annotations` asks for them, formatted values, the lookup's table and the
navigation property behind it. Reading a body checks every value against the column's metadata, as the
service does, and turns `<navigation>@odata.bind` references into lookup values.
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from ._catalog import Column, JsonObject, Table
from ._errors import WebApiError, bad_request, invalid_value
from ._expression import format_datetime
from ._store import StoredRow, StoredValue, is_polymorphic, target_column

FORMATTED_VALUE: Final = "OData.Community.Display.V1.FormattedValue"
LOOKUP_LOGICAL_NAME: Final = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAVIGATION_PROPERTY: Final = "Microsoft.Dynamics.CRM.associatednavigationproperty"

# (target table, row id) -> the row's primary name, for a lookup's formatted value.
NameLookup = Callable[[str, str], str | None]


@dataclass(frozen=True)
class Annotations:
    """Which instance annotations the caller asked for with `Prefer: odata.include-annotations`."""

    patterns: tuple[str, ...] = ()

    @classmethod
    def from_prefer(cls, prefer: str) -> Annotations:
        match = re.search(r'odata\.include-annotations\s*=\s*"?([^",;]*(?:,[^",;]*)*)"?', prefer)
        if not match:
            return cls()
        return cls(tuple(part.strip() for part in match.group(1).split(",") if part.strip()))

    @property
    def requested(self) -> str | None:
        return ",".join(self.patterns) or None

    def wants(self, annotation: str) -> bool:
        return any(fnmatch.fnmatchcase(annotation, pattern) for pattern in self.patterns)


def etag(row: Mapping[str, StoredValue]) -> str:
    return f'W/"{row["versionnumber"]}"'


def _format_number(value: float, decimals: int) -> str:
    return f"{value:,.{decimals}f}"


def _format_datetime(text: str, date_only: bool) -> str:
    if date_only:
        moment = datetime.strptime(text[:10], "%Y-%m-%d")
        return f"{moment.month}/{moment.day}/{moment.year}"
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    hour = moment.hour % 12 or 12
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def formatted_value(column: Column, value: StoredValue) -> str | None:
    """The display text Dataverse returns for a value, or None where it returns none (text, ids)."""
    if value is None:
        return None
    kind = column.kind
    if kind in ("choice", "boolean"):
        return column.option_label(int(value))
    if kind == "choices":
        labels = [column.option_label(int(part)) or part for part in str(value).split(",")]
        return "; ".join(labels)
    if column.attribute_type == "Money":
        return "$" + _format_number(float(value), 2)
    if kind == "decimal":
        return _format_number(float(value), column.precision or 2)
    if kind == "integer" and column.attribute_type == "Integer":
        return _format_number(float(value), 0)
    if kind == "datetime":
        return _format_datetime(str(value), column.date_only)
    return None


def json_value(column: Column, value: StoredValue) -> Any:
    if value is None:
        return None
    if column.kind == "boolean":
        return bool(value)
    if column.kind == "decimal":
        return float(value)
    return value


def render_row(
    table: Table,
    row: StoredRow,
    columns: list[Column] | None,
    annotations: Annotations,
    names: NameLookup,
) -> JsonObject:
    """One row as the Web API returns it; `columns` None means every column."""
    rendered: JsonObject = {"@odata.etag": etag(row)}
    selected = list(table.stored_columns()) if columns is None else columns
    if table.columns[table.primary_id] not in selected:
        selected = [*selected, table.columns[table.primary_id]]
    for column in selected:
        value = row.get(column.logical_name)
        prop = column.property_name
        if value is not None and annotations.patterns:
            if column.is_lookup:
                target = str(row.get(target_column(column)) or column.targets[0]) if column.targets else ""
                if annotations.wants(FORMATTED_VALUE):
                    label = names(target, str(value))
                    if label is not None:
                        rendered[f"{prop}@{FORMATTED_VALUE}"] = label
                if annotations.wants(NAVIGATION_PROPERTY):
                    navigation = navigation_name(table, column, target)
                    if navigation:
                        rendered[f"{prop}@{NAVIGATION_PROPERTY}"] = navigation
                if annotations.wants(LOOKUP_LOGICAL_NAME):
                    rendered[f"{prop}@{LOOKUP_LOGICAL_NAME}"] = target
            elif annotations.wants(FORMATTED_VALUE):
                text = formatted_value(column, value)
                if text is not None:
                    rendered[f"{prop}@{FORMATTED_VALUE}"] = text
        rendered[prop] = json_value(column, value)
    return rendered


def navigation_name(table: Table, column: Column, target: str) -> str | None:
    for navigation in table.navigation.values():
        if navigation.column is column and navigation.target == target:
            return navigation.name
    return next((nav.name for nav in table.navigation.values() if nav.column is column), None)


# -- reading a request body ---------------------------------------------------------------------------------

_EDM_TYPES: Final = {
    "string": "Edm.String",
    "integer": "Edm.Int32",
    "choice": "Edm.Int32",
    "decimal": "Edm.Decimal",
    "boolean": "Edm.Boolean",
    "datetime": "Edm.DateTimeOffset",
    "guid": "Edm.Guid",
    "choices": "Edm.String",
}

# (navigation property value such as "/contacts(<id>)") -> (target table, row id); raises WebApiError.
BindResolver = Callable[[str], tuple[Table, str]]


def _cannot_convert(column: Column, value: object) -> WebApiError:
    return bad_request(
        f"Cannot convert the literal '{value}' to the expected type '{_EDM_TYPES[column.kind]}'."
        f" Property: '{column.logical_name}'."
    )


def _out_of_range(table: Table, column: Column, value: object) -> WebApiError:
    return invalid_value(
        f"A validation error occurred. The value {value} of '{column.logical_name}' on record of type "
        f"'{table.logical_name}' is outside the valid range. Accepted Values: {_range_text(column)}."
    )


def _range_text(column: Column) -> str:
    if column.options:
        return ",".join(str(option.value) for option in column.options)
    return f"{column.min_value} to {column.max_value}"


def stored_value(table: Table, column: Column, value: Any) -> StoredValue:
    """A JSON body value checked against the column's metadata, in stored form."""
    if value is None:
        return None
    kind = column.kind
    if kind == "string":
        if not isinstance(value, str):
            raise _cannot_convert(column, value)
        if column.max_length is not None and len(value) > column.max_length:
            raise invalid_value(
                f"A validation error occurred. The length of the '{column.logical_name}' attribute of the "
                f"'{table.logical_name}' entity exceeded the maximum allowed length of '{column.max_length}'."
            )
        return value
    if kind in ("integer", "choice"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _cannot_convert(column, value)
        if kind == "choice" and column.option_label(value) is None:
            raise _out_of_range(table, column, value)
        _check_range(table, column, value)
        return value
    if kind == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _cannot_convert(column, value)
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise _cannot_convert(column, value) from None
        if not number.is_finite():
            raise _cannot_convert(column, value)
        _check_range(table, column, number)
        return float(number)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _cannot_convert(column, value)
        return int(value)
    if kind == "datetime":
        return _stored_datetime(column, value)
    if kind == "guid":
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise _cannot_convert(column, value) from None
    if kind == "choices":
        parts = str(value).split(",")
        if not all(part.strip().isdigit() and column.option_label(int(part)) for part in parts):
            raise _out_of_range(table, column, value)
        return ",".join(part.strip() for part in parts)
    raise _cannot_convert(column, value)


def _check_range(table: Table, column: Column, value: int | Decimal) -> None:
    if column.min_value is not None and value < Decimal(str(column.min_value)):
        raise _out_of_range(table, column, value)
    if column.max_value is not None and value > Decimal(str(column.max_value)):
        raise _out_of_range(table, column, value)


def _stored_datetime(column: Column, value: Any) -> str:
    if not isinstance(value, str):
        raise _cannot_convert(column, value)
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            moment = datetime.fromisoformat(text + "T00:00:00+00:00")
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError(text)
    except ValueError:
        raise _cannot_convert(column, value) from None
    return moment.date().isoformat() if column.date_only else format_datetime(moment)


def read_body(table: Table, body: object, *, creating: bool, resolve_bind: BindResolver) -> StoredRow:
    """The stored-form changes a create or update body asks for; rejects anything Dataverse rejects."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object describing one entity.")
    changes: StoredRow = {}
    for key, value in body.items():
        if key.startswith("@odata.") or key == "@odata.etag":
            continue
        if key.endswith("@odata.bind"):
            _read_bind(table, key.removesuffix("@odata.bind"), value, changes, resolve_bind)
            continue
        if "@" in key:
            continue  # instance annotations in a body are ignored, as by the service
        column = table.column_by_property(key)
        if column is None:
            raise bad_request(
                f"The property '{key}' does not exist on type '{table.type_name}'. Make sure to only use "
                "property names that are defined by the type or mark the type as open type."
            )
        if column.is_lookup:
            raise bad_request(
                f"Invalid property '{key}' was found in entity '{table.type_name}'. Set a lookup through its "
                "navigation property with @odata.bind."
            )
        allowed = column.is_valid_for_create if creating else column.is_valid_for_update
        if not allowed:
            operation = "create" if creating else "update"
            raise bad_request(f"The attribute '{key}' of '{table.logical_name}' is not valid for {operation}.")
        changes[column.logical_name] = stored_value(table, column, value)
    return changes


def _read_bind(table: Table, navigation_name: str, value: Any, changes: StoredRow, resolve_bind: BindResolver) -> None:
    navigation = table.navigation.get(navigation_name)
    if navigation is None:
        raise bad_request(
            f"An undeclared property '{navigation_name}' which only has property annotations in the payload "
            "but no property value was found in the payload. In OData, only declared navigation properties "
            "and declared named streams can be represented as properties without values."
        )
    column = navigation.column
    if value is None:
        changes[column.logical_name] = None
        if is_polymorphic(column):
            changes[target_column(column)] = None
        return
    if not isinstance(value, str):
        raise bad_request(f"The value of '{navigation_name}@odata.bind' must be a URL such as '/contacts(<id>)'.")
    target_table, row_id = resolve_bind(value)
    if target_table.logical_name != navigation.target and not (
        column.attribute_type == "Owner" and target_table.logical_name in column.targets
    ):
        raise bad_request(
            f"The navigation property '{navigation_name}' points at '{navigation.target}', "
            f"not at '{target_table.logical_name}'."
        )
    changes[column.logical_name] = row_id
    if is_polymorphic(column):
        changes[target_column(column)] = target_table.logical_name
