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

OData's navigation paths, lambda operators and query functions parse into `Lambda`, `QueryFunction` and
properties with a `path`; `_binding.py` turns them into `Related` conditions and plain comparisons before a
filter is compiled. `Related` becomes an `EXISTS` subquery over the related table, limited to the rows the
caller may read, so a condition on related rows never reveals a row the caller could not retrieve.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal as TypingLiteral

from ._catalog import Column, Table
from ._errors import WebApiError, bad_request, not_implemented, unknown_property
from ._store import quote

Value = str | int | float | Decimal | bool | None | uuid.UUID | datetime | date
ComparisonOperator = TypingLiteral["eq", "ne", "gt", "ge", "lt", "le"]
TextFunction = TypingLiteral["contains", "startswith", "endswith", "like", "notlike"]
LambdaOperator = TypingLiteral["any", "all"]


@dataclass(frozen=True)
class Property:
    """A column reference: an OData property name (`name`, `_parentcustomerid_value`) or a FetchXML
    attribute, of the row `alias` names (a linked table, a lambda variable; None: the row filtered), reached
    through the single-valued navigation properties of `path` (`primarycontactid/createdby/fullname`)."""

    name: str
    alias: str | None = None
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    operator: ComparisonOperator
    property: Property
    value: Value


@dataclass(frozen=True)
class ColumnComparison:
    """Two columns of the same row compared (`firstname eq lastname`)."""

    operator: ComparisonOperator
    left: Property
    right: Property


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


@dataclass(frozen=True)
class Lambda:
    """`navigation/any(variable: predicate)` or `all(...)` over a collection-valued navigation property;
    `any()` has no variable and no predicate. Bound into `Related` before compiling."""

    operator: LambdaOperator
    navigation: Property
    variable: str | None = None
    predicate: Expression | None = None


@dataclass(frozen=True)
class QueryFunction:
    """A Dataverse query function as written: `Microsoft.Dynamics.CRM.<name>(PropertyName='...', ...)`.
    Bound into comparisons before compiling (`_functions.py`)."""

    name: str
    property: str
    arguments: tuple[tuple[str, Value | tuple[Value, ...]], ...] = ()


@dataclass(frozen=True)
class Related:
    """True when a row of `table` (as `alias`) whose `column` equals the `outer` column of the row in scope,
    and which the caller may read (`visibility`, SQL over `alias`), meets `condition`.

    A single-valued navigation path reads a missing or unreadable related row as all nulls (`when_absent`):
    `primarycontactid/fullname eq null` holds for an account without a primary contact. `discriminator` is the
    (column, table) pair a polymorphic lookup must also match.
    """

    table: Table = field(compare=False)
    alias: str
    column: str
    outer: Property
    condition: Expression | None
    visibility: tuple[str, tuple[object, ...]] = ("", ())
    when_absent: bool = False
    discriminator: tuple[str, str] | None = None


Expression = Comparison | ColumnComparison | TextMatch | Membership | And | Or | Not | Lambda | QueryFunction | Related

# Resolves a property to (SQL column reference, column): raises WebApiError for unknown names.
Resolver = Callable[[Property], tuple[str, Column]]

_SQL_OPERATORS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def format_datetime(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    # isoformat, not strftime: strftime does not pad years before 1000, which would break text ordering.
    return value.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


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


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def glob_pattern(pattern: str) -> str:
    """A T-SQL LIKE pattern as a SQLite GLOB pattern over lower-cased text.

    Dataverse matches text as SQL Server's LIKE does ("Use wildcard characters in conditions for string values"):
    `%` any run of characters, `_` one character, `[abc]`, `[a-c]` one of a set, `[^abc]` one not in it, and any
    wildcard taken literally inside brackets (`[%]`). GLOB has the same sets, and lower-casing both sides gives
    the case-insensitive comparison of the default collation (for ASCII letters, as SQLite's lower() has it).
    """
    glob = []
    index = 0
    while index < len(pattern):
        character = pattern[index]
        close = pattern.find("]", index + 2) if character == "[" else -1
        if character == "%":
            glob.append("*")
        elif character == "_":
            glob.append("?")
        elif close != -1:
            glob.append(pattern[index : close + 1].translate(_ASCII_LOWER))
            index = close
        elif character in "*?[":
            glob.append(f"[{character}]")
        else:
            glob.append(character.translate(_ASCII_LOWER))
        index += 1
    return "".join(glob)


def compile_filter(expression: Expression, resolve: Resolver) -> tuple[str, list[object]]:
    """A parameterised SQL condition equivalent to `expression`, which has been bound (`_binding.py`)."""

    def resolve_bound(prop: Property) -> tuple[str, Column]:
        if prop.path:  # only a binder knows the tables a path crosses
            raise not_implemented(f"The navigation path '{'/'.join((*prop.path, prop.name))}' is not supported here.")
        return resolve(prop)

    parameters: list[object] = []
    sql = _compile(expression, resolve_bound, parameters)
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
            pattern = {
                "contains": f"%{value}%",
                "startswith": f"{value}%",
                "endswith": f"%{value}",
                "like": value,
                "notlike": value,
            }[function]
            parameters.append(glob_pattern(pattern))
            negation = "NOT " if function == "notlike" else ""
            return f"(lower({reference}) {negation}GLOB ?)"
        case Membership(prop, values, negated):
            reference, column = resolve(prop)
            members = [storage_value(column, value, "in") for value in values]
            parameters.extend(members)
            placeholders = ", ".join("?" for _ in members) or "NULL"
            return f"({reference} {'NOT ' if negated else ''}IN ({placeholders}))"
        case ColumnComparison(operator, left, right):
            left_reference, left_column = resolve(left)
            right_reference, right_column = resolve(right)
            if left_column.kind != right_column.kind:
                raise bad_request(
                    f"A binary operator with incompatible types was detected. Found operand types "
                    f"'Edm.{_edm_type(left_column)}' and 'Edm.{_edm_type(right_column)}' for operator kind "
                    f"'{_OPERATOR_KINDS[operator]}'."
                )
            return f"({left_reference} {_SQL_OPERATORS[operator]} {right_reference})"
        case Related():
            return _compile_related(expression, resolve, parameters)
        case Lambda() | QueryFunction():
            raise not_implemented("Lambda operators and query functions are not supported here.")
    raise AssertionError(f"unknown expression {expression!r}")


def _scoped(resolve: Resolver, related: Related, *, absent: bool = False) -> Resolver:
    """`resolve`, extended to the related row: its columns, or nulls where no such row is there (`absent`)."""

    def resolve_in_scope(prop: Property) -> tuple[str, Column]:
        if prop.alias != related.alias:
            return resolve(prop)
        column = related.table.column_by_property(prop.name)
        if column is None:
            raise unknown_property(related.table.logical_name, prop.name)
        return ("NULL" if absent else f"{quote(related.alias)}.{quote(column.logical_name)}"), column

    return resolve_in_scope


def _compile_related(related: Related, resolve: Resolver, parameters: list[object]) -> str:
    alias = quote(related.alias)

    def rows_clause() -> str:
        """FROM ... WHERE: the related rows the caller may read, linked to the row in scope."""
        outer, _ = resolve(related.outer)
        clause = f"FROM {quote(related.table.logical_name)} AS {alias} WHERE {alias}.{quote(related.column)} = {outer}"
        if related.discriminator is not None:
            clause += f" AND {alias}.{quote(related.discriminator[0])} = ?"
            parameters.append(related.discriminator[1])
        visible, visible_parameters = related.visibility
        if visible:
            clause += f" AND {visible}"
            parameters.extend(visible_parameters)
        return clause

    sql = f"EXISTS (SELECT 1 {rows_clause()}"
    if related.condition is not None:
        sql += f" AND {_compile(related.condition, _scoped(resolve, related), parameters)}"
    sql += ")"
    if not related.when_absent:
        return f"({sql})"
    missing = f"NOT EXISTS (SELECT 1 {rows_clause()})"
    if related.condition is None:
        return f"({sql} OR {missing})"
    absent = _compile(related.condition, _scoped(resolve, related, absent=True), parameters)
    return f"({sql} OR ({missing} AND {absent}))"


def conjunction(parts: Sequence[Expression | None]) -> Expression | None:
    """The AND of the parts that are present."""
    present = tuple(part for part in parts if part is not None)
    if not present:
        return None
    return present[0] if len(present) == 1 else And(present)
