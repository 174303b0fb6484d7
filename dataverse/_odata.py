"""OData request parts built safely: identifiers validated, every literal escaped.

Nothing a caller passes reaches a URL unchecked: names must be OData identifiers, values become typed OData
literals (strings quoted with doubled single quotes, GUIDs and numbers validated), and the whole query string
is percent-encoded by the HTTP layer. A filter value can therefore never change a query's meaning.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Final

from ._errors import DataverseError
from ._metadata import Column

IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LiteralValue = str | int | float | Decimal | bool | None | uuid.UUID | datetime | date


class InvalidQuery(DataverseError):
    """A query part that cannot be sent: not an identifier, not a literal, out of range."""

    hint = "Use column logical names from describe_table, and plain values."


def identifier(name: str, what: str = "column") -> str:
    """`name` if it is a valid OData identifier (a logical name, an entity set, a navigation property)."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise InvalidQuery(f"{name!r} is not a valid {what} name: use letters, digits and underscores.")
    return name


def literal(value: LiteralValue) -> str:
    """`value` as an OData literal for `$filter` or a key segment."""
    match value:
        case None:
            return "null"
        case bool():
            return "true" if value else "false"
        case int():
            return str(value)
        case float():
            if not math.isfinite(value):
                raise InvalidQuery(f"{value!r} is not a finite number.")
            return repr(value)
        case Decimal():
            if not value.is_finite():
                raise InvalidQuery(f"{value!r} is not a finite number.")
            return format(value, "f")
        case uuid.UUID():
            return str(value)
        case datetime():
            if value.tzinfo is None:
                raise InvalidQuery("A date and time needs a time zone, e.g. 2024-01-31T10:00:00Z.")
            return value.isoformat().replace("+00:00", "Z")
        case date():
            return value.isoformat()
        case str():
            # OData has no backslash escape: a quote inside a string literal is doubled.
            return "'" + value.replace("'", "''") + "'"
    raise InvalidQuery(f"Cannot use a value of type {type(value).__name__} in a query.")


def guid(value: str | uuid.UUID) -> uuid.UUID:
    """A row id, validated."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip().strip("{}"))
    except ValueError:
        raise InvalidQuery(f"{value!r} is not a GUID such as 00000000-0000-0000-0000-000000000000.") from None


def key_segment(key: str | uuid.UUID | Mapping[str, LiteralValue]) -> str:
    """The part inside `entityset(...)`: a GUID, or alternate-key pairs `accountnumber='A-1'`."""
    if isinstance(key, Mapping):
        if not key:
            raise InvalidQuery("An alternate key needs at least one column and value.")
        return ",".join(f"{identifier(name)}={literal(value)}" for name, value in key.items())
    return str(guid(key))


@dataclass(frozen=True)
class Expand:
    """A navigation property to expand, with the columns to return from it."""

    navigation_property: str
    select: Sequence[str] = ()

    def render(self) -> str:
        name = identifier(self.navigation_property, "navigation property")
        if not self.select:
            return name
        return f"{name}($select={','.join(identifier(column) for column in self.select)})"


@dataclass(frozen=True)
class ODataQuery:
    """The system query options of a collection request, checked and rendered as query parameters."""

    select: Sequence[str] = ()
    filter: str | None = None
    orderby: Sequence[tuple[str, bool]] = ()
    top: int | None = None
    expand: Sequence[Expand] = ()
    count: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    def params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.select:
            params["$select"] = ",".join(identifier(column) for column in self.select)
        if self.filter:
            params["$filter"] = self.filter
        if self.orderby:
            params["$orderby"] = ",".join(
                f"{identifier(column)} {'desc' if descending else 'asc'}" for column, descending in self.orderby
            )
        if self.top is not None:
            if isinstance(self.top, bool) or not isinstance(self.top, int) or self.top < 1:
                raise InvalidQuery(f"top must be a positive whole number, not {self.top!r}.")
            params["$top"] = str(self.top)
        if self.expand:
            params["$expand"] = ",".join(expand.render() for expand in self.expand)
        if self.count:
            params["$count"] = "true"
        params.update(self.extra)
        return params


def equals(column: str, value: LiteralValue) -> str:
    """A `$filter` comparison `column eq value` with the value escaped."""
    return f"{identifier(column)} eq {literal(value)}"


# A `$filter`'s tokens: string literals whole (quotes doubled inside), numbers, GUIDs and dates whole, names
# (dotted for functions), and single characters.
_FILTER_TOKEN: Final = re.compile(r"'(?:[^']|'')*'|\d[\w.:+-]*|[A-Za-z_][\w.]*|\S")
_NAME: Final = re.compile(r"^[A-Za-z_][\w.]*$")
LAMBDA_OPERATORS: Final = frozenset({"any", "all"})


def filter_paths(text: str) -> list[tuple[str, ...]]:
    """Every property path a `$filter` names (`primarycontactid/fullname`), for a policy to check.

    A lambda variable is replaced by the path it ranges over (`contact_customer_accounts/any(c: c/fullname eq
    'x')` names `contact_customer_accounts/any` and `contact_customer_accounts/fullname`), and a query
    function's `PropertyName='...'` counts as a path too. Keywords, literals and function names come out as
    one-segment paths.
    """
    tokens = _FILTER_TOKEN.findall(text)
    paths: list[tuple[str, ...]] = []
    variables: dict[str, tuple[str, ...]] = {}
    lambdas: list[tuple[int, str, tuple[str, ...] | None]] = []  # (depth of its body, variable, binding it hid)
    depth, index = 0, 0
    while index < len(tokens):
        part = tokens[index]
        if part == "(":
            depth += 1
        elif part == ")":
            while lambdas and lambdas[-1][0] == depth:
                _, variable, hidden = lambdas.pop()
                if hidden is None:
                    variables.pop(variable, None)
                else:
                    variables[variable] = hidden
            depth -= 1
        elif part.startswith("'"):
            if index >= 2 and tokens[index - 1] == "=" and tokens[index - 2] == "PropertyName":
                paths.append(tuple(part[1:-1].replace("''", "'").split("/")))
        elif _NAME.match(part):
            segments = [part]
            while index + 2 < len(tokens) and tokens[index + 1] == "/" and _NAME.match(tokens[index + 2]):
                segments.append(tokens[index + 2])
                index += 2
            head = variables.get(segments[0])
            path = head + tuple(segments[1:]) if head is not None else tuple(segments)
            paths.append(path)
            opens_lambda = len(segments) > 1 and segments[-1] in LAMBDA_OPERATORS
            if opens_lambda and tokens[index + 1 : index + 2] == ["("] and tokens[index + 3 : index + 4] == [":"]:
                variable = tokens[index + 2]
                depth += 1
                lambdas.append((depth, variable, variables.get(variable)))
                variables[variable] = path[:-1]
                index += 4
                continue
        index += 1
    return paths


def rewrite_lookup_names(text: str, columns: Mapping[str, Column]) -> str:
    """The `$filter` with each lookup column named by its logical name written as the property the service
    filters on: `parentcustomerid eq null` becomes `_parentcustomerid_value eq null`.

    Only a bare name is rewritten, and only a lookup of `columns` (the queried table's): never text inside a
    string literal, a segment of a navigation path (`primarycontactid/fullname` names the relationship), a
    function or a lambda variable. Everything else, spacing included, is kept as it was; so is a filter with an
    unterminated string literal, which the service refuses in its own words.
    """
    tokens = list(_FILTER_TOKEN.finditer(text))
    words = [match.group() for match in tokens]
    if "'" in words:
        return text
    variables = {
        words[index + 2]
        for index in range(len(words) - 3)
        if words[index] in LAMBDA_OPERATORS and words[index + 1] == "(" and words[index + 3] == ":"
    }
    parts: list[str] = []
    end = 0
    for index, match in enumerate(tokens):
        column = columns.get(match.group())
        if column is None or not column.is_lookup or match.group() in variables:
            continue
        before = words[index - 1] if index else ""
        after = words[index + 1] if index + 1 < len(words) else ""
        if before == "/" or after in ("/", "(", ":"):
            continue
        parts += [text[end : match.start()], column.property_name]
        end = match.end()
    return "".join(parts) + text[end:]
