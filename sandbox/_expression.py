"""Filter expressions shared by OData `$filter` and FetchXML, and their translation to SQLite.

Both query languages parse into these nodes; `compile_filter` turns a tree into a parameterised SQL condition
against the store's columns (see `_store.py` for how values are stored):

    string, memo      TEXT COLLATE NOCASE   (Dataverse compares text case-insensitively)
    integer, choice   INTEGER
    decimal, money    REAL
    boolean           INTEGER 0 / 1
    datetime          TEXT 'YYYY-MM-DDTHH:MM:SSZ' in UTC; date-only columns 'YYYY-MM-DD'
    guid, lookup      TEXT, lower-case GUID (a polymorphic lookup also keeps `<name>__target`)
    multi-select      TEXT of comma-separated values
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal as TypingLiteral

from ._catalog import Column
from ._errors import WebApiError, bad_request

Value = str | int | float | Decimal | bool | None | uuid.UUID | datetime | date
ComparisonOperator = TypingLiteral["eq", "ne", "gt", "ge", "lt", "le"]
TextFunction = TypingLiteral["contains", "startswith", "endswith", "like", "notlike"]


@dataclass(frozen=True)
class Property:
    """A column reference: an OData property name (`name`, `_parentcustomerid_value`) or a FetchXML
    attribute, optionally of a linked table (`alias`)."""

    name: str
    alias: str | None = None


@dataclass(frozen=True)
class Comparison:
    operator: ComparisonOperator
    property: Property
    value: Value


@dataclass(frozen=True)
class TextMatch:
    """`contains`, `startswith`, `endswith`, and FetchXML's `like` with its own `%` wildcards."""

    function: TextFunction
    property: Property
    value: str


@dataclass(frozen=True)
class Membership:
    """`in` / `not-in` a list of values (FetchXML `in`, OData `Microsoft.Dynamics.CRM.In`)."""

    property: Property
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class And:
    operands: tuple[Expression, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Expression, ...]


@dataclass(frozen=True)
class Not:
    operand: Expression


Expression = Comparison | TextMatch | Membership | And | Or | Not

# Resolves a property to (SQL column reference, column): raises WebApiError for unknown names.
Resolver = Callable[[Property], tuple[str, Column]]

_SQL_OPERATORS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_LIKE_ESCAPE = "\\"


def format_datetime(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


_DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")


_OPERATOR_KINDS = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
    "in": "In",
}


def _type_error(column: Column, value: Value, operator: str = "eq") -> WebApiError:
    return bad_request(
        f"A binary operator with incompatible types was detected. Found operand types "
        f"'Edm.{_edm_type(column)}' and '{_literal_type(value)}' for operator kind '{_OPERATOR_KINDS[operator]}'."
    )


def _edm_type(column: Column) -> str:
    return {
        "string": "String",
        "integer": "Int32",
        "decimal": "Decimal",
        "boolean": "Boolean",
        "datetime": "DateTimeOffset",
        "guid": "Guid",
        "choice": "Int32",
        "choices": "String",
    }[column.kind]


def _literal_type(value: Value) -> str:
    match value:
        case bool():
            return "Edm.Boolean"
        case int():
            return "Edm.Int32"
        case float() | Decimal():
            return "Edm.Decimal"
        case uuid.UUID():
            return "Edm.Guid"
        case datetime():
            return "Edm.DateTimeOffset"
        case date():
            return "Edm.Date"
        case _:
            return "Edm.String"


def storage_value(column: Column, value: Value, operator: str = "eq") -> str | int | float | None:
    """`value` as the store keeps it for `column`; a value of the wrong type is a 400."""
    if value is None:
        return None
    kind = column.kind
    if kind == "string":
        if isinstance(value, str):
            return value
    elif kind in ("integer", "choice"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and kind == "choice" and value.lstrip("-").isdigit():
            return int(value)
    elif kind == "decimal":
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            return float(value)
    elif kind == "boolean":
        if isinstance(value, bool):
            return int(value)
    elif kind == "datetime":
        if isinstance(value, datetime):
            return value.date().isoformat() if column.date_only else format_datetime(value)
        if isinstance(value, date):
            return (
                value.isoformat()
                if column.date_only
                else format_datetime(datetime.combine(value, datetime.min.time(), UTC))
            )
    elif kind == "guid":
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                pass
    elif kind == "choices" and isinstance(value, str | int):
        return str(value)
    raise _type_error(column, value, operator)


def _escape_like(text: str) -> str:
    return (
        text.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2).replace("%", _LIKE_ESCAPE + "%").replace("_", _LIKE_ESCAPE + "_")
    )


def compile_filter(expression: Expression, resolve: Resolver) -> tuple[str, list[object]]:
    """A parameterised SQL condition equivalent to `expression`."""
    parameters: list[object] = []
    sql = _compile(expression, resolve, parameters)
    return sql, parameters


def _compile(expression: Expression, resolve: Resolver, parameters: list[object]) -> str:
    match expression:
        case And(operands):
            return "(" + " AND ".join(_compile(operand, resolve, parameters) for operand in operands) + ")"
        case Or(operands):
            return "(" + " OR ".join(_compile(operand, resolve, parameters) for operand in operands) + ")"
        case Not(operand):
            return f"(NOT COALESCE({_compile(operand, resolve, parameters)}, 0))"
        case Comparison(operator, prop, value):
            reference, column = resolve(prop)
            stored = storage_value(column, value, operator)
            if stored is None:
                if operator == "eq":
                    return f"({reference} IS NULL)"
                if operator == "ne":
                    return f"({reference} IS NOT NULL)"
                raise bad_request(f"The operator '{operator}' cannot be used with null.")
            parameters.append(stored)
            if operator == "ne":
                # OData `ne` is true for null columns too, as SQL Server's Dataverse query does.
                return f"({reference} IS NULL OR {reference} <> ?)"
            return f"({reference} {_SQL_OPERATORS[operator]} ?)"
        case TextMatch(function, prop, value):
            reference, column = resolve(prop)
            if column.kind != "string":
                raise bad_request(
                    f"The '{function}' function cannot be applied to the column '{prop.name}' of type "
                    f"'Edm.{_edm_type(column)}'."
                )
            if function in ("like", "notlike"):
                pattern = value
            else:
                escaped = _escape_like(value)
                pattern = {
                    "contains": f"%{escaped}%",
                    "startswith": f"{escaped}%",
                    "endswith": f"%{escaped}",
                }[function]
            parameters.append(pattern)
            negation = "NOT " if function == "notlike" else ""
            escape = "" if function in ("like", "notlike") else f" ESCAPE '{_LIKE_ESCAPE}'"
            return f"({reference} {negation}LIKE ?{escape})"
        case Membership(prop, values, negated):
            reference, column = resolve(prop)
            members = [storage_value(column, value, "in") for value in values]
            parameters.extend(members)
            placeholders = ", ".join("?" for _ in members) or "NULL"
            return f"({reference} {'NOT ' if negated else ''}IN ({placeholders}))"
    raise AssertionError(f"unknown expression {expression!r}")


def conjunction(parts: Sequence[Expression | None]) -> Expression | None:
    """The AND of the parts that are present."""
    present = tuple(part for part in parts if part is not None)
    if not present:
        return None
    return present[0] if len(present) == 1 else And(present)
