"""Facets of a Dataverse search: how many of the rows found hold each value of a column, or fall in each range.

"Dataverse Search query" (`facets` parameter): a facet is `<column>`, `<table>:<column>` or `entityname`, then
comma-separated settings: `count` (most values returned, default 10), `sort` (`count`: most rows first, `-count`,
`value`, `-value`), `values` (pipe-separated ascending bounds of ranges, numbers or dates and times). `count` and
`sort` combine with each other, not with `values`. Every row found counts, whatever `skip` and `top` return; a row
without the column, or with it null, counts for no value. A value facet answers
`{"count", "from": null, "to": null, "type": "Value", "value", "optionalvalue"}`, the optional value being a
lookup's primary name (the page: "populated while faceting on lookups"); a range facet
`{"count", "from", "to", "type": "Range", "value": null, ...}`, an open end null.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ._catalog import Column, JsonObject, Table
from ._errors import BAD_REQUEST, WebApiError, not_implemented
from ._expression import format_datetime
from ._records import NameLookup, json_value
from ._store import StoredRow, is_polymorphic, target_column

DEFAULT_COUNT: Final = 10  # "The maximum number of facet terms. The default is 10."
ENTITY_NAME: Final = "entityname"
_SORTS: Final = ("count", "-count", "value", "-value")
_RANGE_KINDS: Final = frozenset({"integer", "decimal", "datetime"})

# A row found: its table, the columns its index holds, the row.
FoundRow = tuple[Table, Mapping[str, Column], StoredRow]


def _invalid(message: str) -> WebApiError:
    return WebApiError(400, BAD_REQUEST, message)


@dataclass(frozen=True)
class Bound:
    """A range facet's bound: where it falls (a number, or a date and time as a POSIX timestamp) and as answered."""

    position: float
    answered: float | str


@dataclass(frozen=True)
class Facet:
    """One facet as asked for; `key` is its text before the settings, the key of its answer."""

    key: str
    table: str | None
    column: str
    count: int = DEFAULT_COUNT
    sort: str = "count"
    bounds: tuple[Bound, ...] | None = None  # a range facet's


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _bound(text: str, column: Column) -> Bound:
    try:
        if column.kind == "datetime":
            moment = _moment(text)
            return Bound(moment.timestamp(), format_datetime(moment))
        number = float(text)
    except ValueError:
        raise _invalid(f"The facet bound '{text}' is not a {column.kind} value of '{column.logical_name}'.") from None
    return Bound(number, int(number) if number.is_integer() else number)


def parse_facet(spec: Any, indexes: Mapping[str, Mapping[str, Column]]) -> Facet:
    """One item of `facets` for a search of the tables whose indexed columns `indexes` holds."""
    if not isinstance(spec, str):
        raise _invalid('Each facet is a string such as "entityname,count:100".')
    key, *settings = (part.strip() for part in spec.split(","))
    table, _, name = key.rpartition(":")
    count, sort, values = DEFAULT_COUNT, "count", None
    for setting in settings:
        setting_name, _, value = setting.partition(":")
        if setting_name == "count" and value.isdigit() and int(value) > 0:
            count = int(value)
        elif setting_name == "sort" and value in _SORTS:
            sort = value
        elif setting_name == "values" and value:
            values = value.split("|")
        elif setting_name in ("interval", "timeoffset"):
            raise not_implemented(f"The sandbox does not emulate facet '{setting_name}'; use 'values' for ranges.")
        else:
            raise _invalid(
                f"The facet setting '{setting}' of '{spec}' is not count:<number above 0>, "
                f"sort:{'|'.join(_SORTS)} or values:<bound>|<bound>..."
            )
    if values is not None and any(setting.startswith(("count:", "sort:")) for setting in settings):
        raise _invalid(f"The facet '{spec}' combines 'values' with 'count' or 'sort', which the service refuses.")
    columns = [
        indexed[name] for logical_name, indexed in indexes.items() if table in ("", logical_name) and name in indexed
    ]
    if name != ENTITY_NAME and not columns:
        raise _invalid(f"The facet '{key}' names a column no table searched holds in its search index.")
    bounds = None
    if values is not None:
        if name == ENTITY_NAME or columns[0].kind not in _RANGE_KINDS:
            raise _invalid(f"The facet '{key}' has ranges ('values'), which only numbers, dates and times have.")
        bounds = tuple(_bound(value, columns[0]) for value in values)
    return Facet(key, table or None, name, count, sort, bounds)


def lookup_name(column: Column, row: StoredRow, names: NameLookup) -> str | None:
    """The primary name of the row a lookup of `row` points to."""
    value = row.get(column.logical_name)
    if value is None:
        return None
    target = str(row.get(target_column(column)) or "") if is_polymorphic(column) else column.targets[0]
    return names(target, str(value))


def _value(facet: Facet, found: FoundRow, names: NameLookup) -> tuple[Any, Any, float | None] | None:
    """The row's value for the facet as answered, its optional value and, for ranges, its position; None if the
    row has no value for it."""
    table, columns, row = found
    if facet.table not in (None, table.logical_name):
        return None
    if facet.column == ENTITY_NAME:
        return table.logical_name, None, None
    column = columns.get(facet.column)
    stored = None if column is None else row.get(column.logical_name)
    if column is None or stored is None:
        return None
    optional = lookup_name(column, row, names) if column.is_lookup else None
    position = None
    if facet.bounds is not None:
        position = _moment(str(stored)).timestamp() if column.kind == "datetime" else float(stored)
    return json_value(column, stored), optional, position


def count_facet(facet: Facet, rows: Iterable[FoundRow], names: NameLookup) -> list[JsonObject]:
    """The facet's answer over every row found."""
    values = [value for found in rows if (value := _value(facet, found, names)) is not None]
    if facet.bounds is not None:
        return _ranges(facet.bounds, [position for _, _, position in values if position is not None])
    counts = Counter((value, optional) for value, optional, _ in values)
    ordered = sorted(counts.items(), key=lambda item: item[0][0])
    if facet.sort in ("count", "-count"):
        ordered.sort(key=lambda item: item[1], reverse=facet.sort == "count")
    elif facet.sort == "-value":
        ordered.reverse()
    return [
        {"count": count, "from": None, "to": None, "type": "Value", "value": value, "optionalvalue": optional}
        for (value, optional), count in ordered[: facet.count]
    ]


def _ranges(bounds: tuple[Bound, ...], positions: list[float]) -> list[JsonObject]:
    """One range below the first bound, one between each two, one from the last on."""
    edges: list[Bound | None] = [None, *bounds, None]
    answer = []
    for low, high in itertools.pairwise(edges):
        count = sum(
            1
            for position in positions
            if (low is None or position >= low.position) and (high is None or position < high.position)
        )
        answer.append(
            {
                "count": count,
                "from": None if low is None else low.answered,
                "to": None if high is None else high.answered,
                "type": "Range",
                "value": None,
                "optionalvalue": None,
            }
        )
    return answer
