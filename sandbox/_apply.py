"""The Web API's `$apply`: aggregate and group rows as Dataverse's subset of OData data aggregation allows.

    $apply=aggregate(revenue with sum as total, $count as count)
    $apply=groupby((statuscode,_ownerid_value))
    $apply=groupby((primarycontactid/fullname),aggregate(revenue with average as average))
    $apply=filter(address1_stateorprovince eq 'WA')/groupby((statuscode),aggregate($count as count))

Methods are `sum`, `average`, `min`, `max` and `$count`. Rows are filtered before they are grouped; what Dataverse
documents as unsupported is refused: grouping by a date and time column, `$orderby` naming an aggregate, and a
distinct count (`countdistinct`), which only FetchXML gives. A query option beside `$apply` and a transformation
after the grouping are refused too, rather than answered in a way the service may not. The grouped rows are
computed by `_aggregate.py`, the same engine as FetchXML's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ._aggregate import Aggregation, Grouping, Measure, MeasureFunction, aggregate_rows
from ._catalog import JsonObject, Table
from ._environment import Environment
from ._errors import bad_request, unknown_property
from ._expression import Expression, Property, conjunction
from ._odata import parse_filter, parse_orderby
from ._query import Join, RowQuery
from ._records import Annotations, NameLookup
from ._security import Caller

_QUOTED_LIMIT: Final = 200
_NAME: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH: Final = re.compile(rf"\s*({_NAME})(?:/({_NAME}))?\s*")
_TRANSFORMATION: Final = re.compile(r"\s*([A-Za-z$]+)\s*\((.*)\)\s*", re.DOTALL)
_COUNT: Final = re.compile(rf"\s*\$count\s+as\s+({_NAME})\s*")
_AGGREGATE: Final = re.compile(rf"\s*({_NAME}(?:/{_NAME})?)\s+with\s+({_NAME})\s+as\s+({_NAME})\s*")
_METHODS: Final[dict[str, MeasureFunction]] = {"sum": "sum", "average": "avg", "min": "min", "max": "max"}


def _quoted(text: str) -> str:
    return text if len(text) <= _QUOTED_LIMIT else text[:_QUOTED_LIMIT] + "…"


def _split(text: str, separator: str) -> list[str]:
    """`text` split on `separator` outside parentheses and string literals."""
    parts: list[str] = []
    start, depth, quoted = 0, 0, False
    for index, character in enumerate(text):
        if character == "'":
            quoted = not quoted  # a doubled quote toggles twice, staying inside the literal
        elif quoted:
            continue
        elif character in "()":
            depth += 1 if character == "(" else -1
            if depth < 0:
                raise bad_request(f"Syntax error at position {index} in '{_quoted(text)}': ')' has no '('.")
        elif character == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if quoted or depth:
        raise bad_request(f"Syntax error at position {len(text)} in '{_quoted(text)}': a '(' or quote is not closed.")
    parts.append(text[start:])
    return parts


@dataclass
class ApplyQuery:
    """A parsed `$apply`: the rows' filters, then one grouping or aggregation."""

    filters: list[Expression] = field(default_factory=list)
    paths: list[tuple[str, str | None]] = field(default_factory=list)  # (property or navigation, property)
    measures: list[tuple[str, str, str | None]] = field(default_factory=list)  # (alias, method, property)


def parse_apply(text: str) -> ApplyQuery:
    """The transformations of a `$apply` value: `filter(...)/`… then `aggregate(...)` or `groupby(...)`."""
    query = ApplyQuery()
    transformations = _split(text, "/")
    for index, transformation in enumerate(transformations):
        match = _TRANSFORMATION.fullmatch(transformation)
        if match is None:
            raise bad_request(
                f"Syntax error in $apply='{_quoted(text)}': '{_quoted(transformation.strip())}' is not "
                "'aggregate(...)', 'groupby(...)' or 'filter(...)'."
            )
        name, arguments = match.groups()
        last = index == len(transformations) - 1
        if name == "filter":
            if last:
                raise bad_request(
                    "In $apply, filter(...) filters the rows before one aggregate(...) or groupby(...), "
                    "as in filter(statecode eq 0)/groupby((statuscode),aggregate($count as count))."
                )
            query.filters.append(parse_filter(arguments))
        elif name in ("aggregate", "groupby") and last:
            _parse_grouping(query, name, arguments, text)
        elif name in ("aggregate", "groupby"):
            raise bad_request(f"In $apply, nothing may follow {name}(...): filter the rows before grouping them.")
        else:
            raise bad_request(
                f"The $apply transformation '{_quoted(name)}' is not supported: use aggregate, groupby or filter."
            )
    return query


def _parse_grouping(query: ApplyQuery, name: str, arguments: str, text: str) -> None:
    if name == "aggregate":
        _parse_measures(query, arguments, text)
        return
    parts = _split(arguments, ",")
    paths = parts[0].strip()
    if not (paths.startswith("(") and paths.endswith(")")) or len(parts) > 2:
        raise bad_request(
            f"Syntax error in $apply='{_quoted(text)}': write groupby((name,...)) or "
            "groupby((name,...),aggregate(...))."
        )
    for path in _split(paths[1:-1], ","):
        match = _PATH.fullmatch(path)
        if match is None:
            raise bad_request(f"Syntax error in $apply='{_quoted(text)}': '{_quoted(path.strip())}' is not a property.")
        query.paths.append((match.group(1), match.group(2)))
    if len(parts) == 2:
        match = _TRANSFORMATION.fullmatch(parts[1])
        if match is None or match.group(1) != "aggregate":
            raise bad_request(f"Syntax error in $apply='{_quoted(text)}': groupby takes one aggregate(...).")
        _parse_measures(query, match.group(2), text)


def _parse_measures(query: ApplyQuery, arguments: str, text: str) -> None:
    for item in _split(arguments, ","):
        count = _COUNT.fullmatch(item)
        if count is not None:
            query.measures.append((count.group(1), "$count", None))
            continue
        match = _AGGREGATE.fullmatch(item)
        if match is None:
            raise bad_request(
                f"Syntax error in $apply='{_quoted(text)}': '{_quoted(item.strip())}' is not "
                "'<property> with <method> as <alias>' or '$count as <alias>'."
            )
        path, method, alias = match.groups()
        if method == "countdistinct":
            # Documented: OData cannot count distinct values in Dataverse; FetchXML can.
            raise bad_request(
                "Dataverse's OData cannot count distinct values ('countdistinct'): use FetchXML, "
                "<attribute name='...' alias='...' aggregate='countcolumn' distinct='true'/>."
            )
        if method not in _METHODS:
            raise bad_request(f"The aggregation method '{method}' is not supported: use sum, average, min or max.")
        if "/" in path:
            raise bad_request(f"Aggregating '{path}' is not supported: aggregate a column of the table itself.")
        query.measures.append((alias, method, path))


def _check_options(options: Mapping[str, str], aliases: set[str]) -> None:
    for name in options:
        if name == "$orderby":
            if any(prop.name in aliases for prop, _ in parse_orderby(options[name])):
                # The service's documented answer to ordering by an aggregate value.
                raise bad_request("The query node SingleValueOpenPropertyAccess is not supported")
            raise bad_request("$orderby cannot be combined with $apply; FetchXML orders groups: <order alias='...'/>.")
        if name.startswith("$") and name != "$apply":
            hint = " Filter rows inside $apply: filter(...)/groupby(...)." if name == "$filter" else ""
            raise bad_request(f"The query option '{name}' cannot be combined with $apply.{hint}")


def answer_apply(
    environment: Environment,
    table: Table,
    options: Mapping[str, str],
    caller: Caller,
    annotations: Annotations,
    names: NameLookup,
    *,
    within: Expression | None = None,
    bind: Callable[[Expression], Expression] | None = None,
) -> JsonObject:
    """The Web API's answer to `GET <entity set>?$apply=...`: one row per group, no paging.

    `within` limits the rows to a related collection (`accounts(<id>)/contact_customer_accounts`); `bind` gives
    each `filter(...)` the meaning `$filter` has (navigation paths, lambda operators, query functions)."""
    parsed = parse_apply(options["$apply"])
    _check_options(options, {alias for alias, _, _ in parsed.measures})
    filters = [bind(part) for part in parsed.filters] if bind else parsed.filters
    query = RowQuery(table, filter=conjunction([within, *filters]))
    groupings = []
    for first, second in parsed.paths:
        if second is None:
            groupings.append(Grouping(first, Property(first)))
            continue
        target = _join(environment, table, query, first)
        groupings.append(Grouping(f"{target.logical_name}_{second}", Property(second, first)))
    measures = [
        Measure(alias, "count") if path is None else Measure(alias, _METHODS[method], Property(path))
        for alias, method, path in parsed.measures
    ]
    seen: set[str] = set()
    for name in [grouping.name for grouping in groupings] + [measure.name for measure in measures]:
        if name in seen:
            raise bad_request(f"The name '{name}' is given to more than one property of the $apply result.")
        seen.add(name)
    aggregation = Aggregation(tuple(groupings), tuple(measures))
    rows = aggregate_rows(environment.store, query, aggregation, caller, annotations, names, odata=True)
    return {"@odata.context": f"{environment.api_url}/$metadata#{table.entity_set_name}", "value": rows}


def _join(environment: Environment, table: Table, query: RowQuery, name: str) -> Table:
    """The table behind single-valued navigation property `name`, joined to `query` once as `name`."""
    navigation = table.navigation.get(name)
    target = environment.catalog.get(navigation.target) if navigation else None
    if navigation is None or target is None:
        raise unknown_property(table.logical_name, name)
    if all(join.alias != name for join in query.joins):
        query.joins.append(Join(name, target, target.primary_id, None, navigation.column.logical_name, outer=True))
    return target
