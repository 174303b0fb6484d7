"""Aggregates, as `<fetch aggregate='true'>` and the Web API's `$apply` ask for them.

Both query languages describe an `Aggregation`: groupings (a column, or one part of a date column) and measures
(count of rows; count, distinct count, sum, average, minimum or maximum of a column), answered by one grouped
SELECT over the rows the caller can see (`_query.py`): a salesperson's totals cover the rows they own. As the
service computes them:

    null values count in no aggregate; a sum of no values is 0
    an average of whole numbers is a whole number (SQL Server's AVG truncates)
    a group value or aggregate that is null is left out of its row
    more than 50,000 rows to aggregate fail with AggregateQueryRecordLimit (0x8004e023)

Dates group in UTC, the time zone of every sandbox user, and the fiscal year is the calendar year.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal, cast

from ._catalog import Column, JsonObject, Table
from ._environment import Environment
from ._errors import WebApiError, bad_request
from ._expression import Property
from ._fetchxml import (
    AGGREGATE_LIMIT,
    MAX_COUNT,
    FetchAttribute,
    FetchLink,
    FetchQuery,
    query_builder_error,
    unknown_attribute,
)
from ._query import ROOT, Resolver, RowQuery, count_rows, select_groups
from ._records import (
    FORMATTED_VALUE,
    LOOKUP_LOGICAL_NAME,
    NAVIGATION_PROPERTY,
    Annotations,
    NameLookup,
    formatted_value,
    json_value,
    navigation_name,
)
from ._security import Caller
from ._store import Store, StoredRow, is_polymorphic, quote, target_column

DatePart = Literal["day", "week", "month", "quarter", "year"]
MeasureFunction = Literal["count", "countcolumn", "countdistinct", "sum", "avg", "min", "max"]

RECORD_LIMIT_EXCEEDED: Final = "0x8004e023"  # AggregateQueryRecordLimitExceeded
INVALID_AGGREGATE_ATTRIBUTE: Final = "0x8004112f"  # QueryBuilderInvalidAggregateAttribute
_COUNTS: Final = ("count", "countcolumn", "countdistinct")
_ACCEPTS: Final = {
    "sum": ("integer", "decimal"),
    "avg": ("integer", "decimal"),
    "min": ("integer", "decimal", "datetime"),
    "max": ("integer", "decimal", "datetime"),
}
_SQL_FUNCTIONS: Final = {
    "countcolumn": "COUNT({})",
    "countdistinct": "COUNT(DISTINCT {})",
    "sum": "COALESCE(SUM({}), 0)",
    "avg": "AVG({})",
    "min": "MIN({})",
    "max": "MAX({})",
}
# strftime reads the stored 'YYYY-MM-DD' and 'YYYY-MM-DDTHH:MM:SSZ' alike.
_DATE_PARTS: Final = {
    "day": "CAST(strftime('%d', {0}) AS INTEGER)",
    # SQL Server's DATEPART(week): weeks start on Sunday and week 1 is the one holding 1 January.
    "week": "((CAST(strftime('%j', {0}) AS INTEGER) + CAST(strftime('%w', {0}, 'start of year') AS INTEGER) - 1)"
    " / 7 + 1)",
    "month": "CAST(strftime('%m', {0}) AS INTEGER)",
    "quarter": "((CAST(strftime('%m', {0}) AS INTEGER) + 2) / 3)",  # of the fiscal year, here the calendar year
    "year": "CAST(strftime('%Y', {0}) AS INTEGER)",
}


@dataclass(frozen=True)
class Grouping:
    """A group key, returned as `name`: the value of `prop`, or one part of its date."""

    name: str
    prop: Property
    date_part: DatePart | None = None


@dataclass(frozen=True)
class Measure:
    """An aggregate, returned as `name`; `prop` None counts rows."""

    name: str
    function: MeasureFunction
    prop: Property | None = None


@dataclass(frozen=True)
class Aggregation:
    groupings: tuple[Grouping, ...]
    measures: tuple[Measure, ...]
    orders: tuple[tuple[str, bool], ...] = ()  # (grouping or measure name, descending), before the group keys
    record_limit: int = AGGREGATE_LIMIT


def record_limit_exceeded() -> WebApiError:
    return WebApiError(400, RECORD_LIMIT_EXCEEDED, "AggregateQueryRecordLimit exceeded. Cannot perform this operation.")


@dataclass(frozen=True)
class _Output:
    """Where one grouping or measure is in the SQL result, and what it is."""

    name: str
    sql_name: str
    table: Table
    column: Column | None
    function: MeasureFunction | None = None  # None: a grouping
    date_part: DatePart | None = None


def aggregate_rows(
    store: Store,
    query: RowQuery,
    aggregation: Aggregation,
    caller: Caller,
    annotations: Annotations,
    names: NameLookup,
    *,
    odata: bool,
) -> list[JsonObject]:
    """The rows of an aggregate query over the rows `query` selects (its limit and offset page the groups)."""
    resolve = Resolver(query, odata=odata)
    columns: list[str] = []
    groups: list[str] = []
    outputs: list[_Output] = []
    for index, grouping in enumerate(aggregation.groupings):
        reference, column = resolve(grouping.prop)
        sql_name = f"g{index}"
        reference = _grouped(reference, column, grouping, odata=odata)
        columns.append(f"{reference} AS {sql_name}")
        groups.append(reference)
        if column.is_lookup and is_polymorphic(column):
            target = f"{quote(grouping.prop.alias or ROOT)}.{quote(target_column(column))}"
            columns.append(f"{target} AS {sql_name}t")
            groups.append(target)
        table = resolve.aliases.get(grouping.prop.alias or "", query.table)
        outputs.append(_Output(grouping.name, sql_name, table, column, date_part=grouping.date_part))
    for index, measure in enumerate(aggregation.measures):
        sql_name = f"m{index}"
        if measure.prop is None:
            columns.append(f"COUNT(*) AS {sql_name}")
            outputs.append(_Output(measure.name, sql_name, query.table, None, function=measure.function))
            continue
        reference, column = resolve(measure.prop)
        columns.append(f"{_measured(reference, column, measure.function)} AS {sql_name}")
        outputs.append(_Output(measure.name, sql_name, query.table, column, function=measure.function))
    if not columns:
        raise query_builder_error("QueryBuilderDeserializeInvalidAggregate", "Name a column to group or aggregate.")
    by_name = {output.name: output.sql_name for output in outputs}
    order = []
    for name, descending in aggregation.orders:
        if name not in by_name:
            raise query_builder_error("QueryBuilderInvalid_Alias", f"No attribute has the alias '{name}'.")
        order.append(f"{by_name[name]} {'DESC' if descending else 'ASC'}")
    order += [output.sql_name for output in outputs if output.function is None]
    if count_rows(store, query, caller, odata=odata) > aggregation.record_limit:
        raise record_limit_exceeded()
    rows = select_groups(store, query, caller, columns, groups, order, odata=odata)
    return [_render(row, outputs, annotations, names, odata=odata) for row in rows]


def _grouped(reference: str, column: Column, grouping: Grouping, *, odata: bool) -> str:
    """The SQL expression a grouping groups by: the column, or the part of its date."""
    if grouping.date_part is not None:
        if column.kind != "datetime":
            raise query_builder_error("QueryBuilderInvalidDateGrouping", f"'{column.logical_name}' is not a date.")
        return _DATE_PARTS[grouping.date_part].format(reference)
    if column.kind == "datetime":
        if odata:  # documented: groupby with datetime values is not supported
            raise bad_request(f"Grouping by the date and time column '{grouping.prop.name}' is not supported.")
        raise query_builder_error("QueryBuilderInvalidDateGrouping", "Invalid value '' for dategrouping.")
    return reference


def _measured(reference: str, column: Column, function: MeasureFunction) -> str:
    """The SQL aggregate of a column; a function the column's type does not take is the service's 400."""
    accepted = _ACCEPTS.get(function)
    if accepted is not None and (column.is_lookup or column.kind not in accepted):
        raise WebApiError(
            400,
            INVALID_AGGREGATE_ATTRIBUTE,
            f"Aggregate {function} is not supported for attribute of type {column.attribute_type.lower()}.",
        )
    return "COUNT(*)" if function == "count" else _SQL_FUNCTIONS[function].format(reference)


def _render(
    row: StoredRow, outputs: list[_Output], annotations: Annotations, names: NameLookup, *, odata: bool
) -> JsonObject:
    rendered: JsonObject = {}
    for output in outputs:
        value = row[output.sql_name]
        if value is None:
            continue  # the service leaves a null group value or aggregate out of the row
        column, name = output.column, output.name
        label: str | None
        if output.function in _COUNTS or output.date_part is not None:
            shown: object = int(value)
            label = f"{int(value):,}"
        elif column is None:
            raise AssertionError("a grouping or aggregate of a column has its column")
        elif output.function is None and column.is_lookup:
            target = str(row.get(output.sql_name + "t") or column.targets[0])
            shown, label = value, names(target, str(value))
            if odata and annotations.wants(NAVIGATION_PROPERTY):
                navigation = navigation_name(output.table, column, target)
                if navigation:
                    rendered[f"{name}@{NAVIGATION_PROPERTY}"] = navigation
            if annotations.wants(LOOKUP_LOGICAL_NAME):
                rendered[f"{name}@{LOOKUP_LOGICAL_NAME}"] = target
        else:
            if column.kind == "integer":
                value = math.trunc(float(value))
            shown, label = json_value(column, value), formatted_value(column, value)
        if label is not None and annotations.wants(FORMATTED_VALUE):
            rendered[f"{name}@{FORMATTED_VALUE}"] = label
        rendered[name] = shown
    return rendered


def _attributes(fetch: FetchQuery) -> Iterator[tuple[str | None, FetchAttribute]]:
    """Every `<attribute>` of the query with the alias of the link-entity holding it (None: the entity)."""
    for attribute in fetch.attributes or ():
        yield None, attribute

    def walk(links: tuple[FetchLink, ...]) -> Iterator[tuple[str | None, FetchAttribute]]:
        for link in links:
            for attribute in link.attributes or ():
                yield link.alias, attribute
            yield from walk(link.links)

    yield from walk(fetch.links)


def fetch_aggregate(
    environment: Environment,
    table: Table,
    fetch: FetchQuery,
    query: RowQuery,
    caller: Caller,
    annotations: Annotations,
    names: NameLookup,
) -> JsonObject:
    """The Web API's answer to `<fetch aggregate='true'>`: a row per group, each value under its alias.

    `query` holds the fetch's link-entities and typed filters. Groups page as rows do (`count`, `page`,
    `morerecords`), without a paging cookie: the service returns none for queries that cannot use one.
    """
    tables = {join.alias: join.table for join in query.joins}
    groupings: list[Grouping] = []
    measures: list[Measure] = []
    for link_alias, attribute in _attributes(fetch):
        holder = table if link_alias is None else tables[link_alias]
        if attribute.name not in holder.columns:
            raise unknown_attribute(holder.logical_name, attribute.name)
        prop = Property(attribute.name, link_alias)
        if attribute.groupby:
            if attribute.dategrouping in ("fiscal-period", "fiscal-year"):
                raise query_builder_error(
                    "QueryBuilderInvalidDateGrouping",
                    f"The sandbox has no fiscal year settings, so it cannot group by {attribute.dategrouping}.",
                )
            default_name = attribute.name if link_alias is None else f"{link_alias}.{attribute.name}"
            date_part = cast("DatePart | None", attribute.dategrouping)
            groupings.append(Grouping(attribute.alias or default_name, prop, date_part))
        elif attribute.aggregate is not None and attribute.alias is not None:
            distinct = attribute.aggregate == "countcolumn" and attribute.distinct
            measures.append(Measure(attribute.alias, "countdistinct" if distinct else attribute.aggregate, prop))
    page_size = fetch.count or MAX_COUNT
    if fetch.top is not None:
        query.limit, query.offset = fetch.top, 0
    else:
        query.limit, query.offset = page_size + 1, (fetch.page - 1) * page_size
    aggregation = Aggregation(tuple(groupings), tuple(measures), fetch.alias_orders, fetch.aggregate_limit)
    rows = aggregate_rows(environment.store, query, aggregation, caller, annotations, names, odata=False)
    return {
        "@odata.context": f"{environment.api_url}/$metadata#{table.entity_set_name}",
        "value": rows[:page_size],
        "@Microsoft.Dynamics.CRM.morerecords": fetch.top is None and len(rows) > page_size,
    }
