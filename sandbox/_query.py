"""Row queries against the store: security filtering, `$select`/`$filter`/`$orderby`, paging and `$expand`.

Both query languages end here: OData options are parsed by `_odata.py`, FetchXML by `_fetchxml.py`, and a
`RowQuery` is turned into one parameterised SELECT; aggregates (`_aggregate.py`) group the same rows. Visibility
follows the caller's role: a salesperson reads only the rows they own, an administrator or reader every row
(`_security.py`), so a salesperson's counts and sums cover only their own rows too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ._catalog import Column, Table
from ._errors import unknown_property
from ._expression import Expression, Property, compile_filter
from ._security import Caller
from ._store import Store, StoredRow, quote


@dataclass
class Join:
    """A linked table (FetchXML link-entity, or the parent of an expanded lookup)."""

    alias: str
    table: Table
    from_column: str  # column of the linked table
    to_alias: str | None  # None: the root table
    to_column: str
    outer: bool


@dataclass
class RowQuery:
    table: Table
    filter: Expression | None = None
    orderby: Sequence[tuple[Property, bool]] = ()
    limit: int | None = None
    offset: int = 0
    joins: list[Join] = field(default_factory=list)


ROOT = "t0"


class Resolver:
    """Maps the properties a query names onto SQL column references, rejecting unknown ones."""

    def __init__(self, query: RowQuery, *, odata: bool) -> None:
        self.query = query
        self.odata = odata
        self.aliases = {join.alias: join.table for join in query.joins}

    def __call__(self, prop: Property) -> tuple[str, Column]:
        alias = prop.alias or ROOT
        table = self.query.table if prop.alias is None else self.aliases.get(prop.alias)
        if table is None:
            raise unknown_property(self.query.table.logical_name, f"{prop.alias}.{prop.name}")
        column = table.column_by_property(prop.name) if self.odata else table.columns.get(prop.name)
        if column is None:
            raise unknown_property(table.logical_name, prop.name)
        return f"{quote(alias)}.{quote(column.logical_name)}", column


def _from_clause(query: RowQuery, caller: Caller, parameters: list[object]) -> str:
    parts = [f"{quote(query.table.logical_name)} AS {ROOT}"]
    for join in query.joins:
        kind = "LEFT JOIN" if join.outer else "JOIN"
        condition = (
            f"{quote(join.alias)}.{quote(join.from_column)} = {quote(join.to_alias or ROOT)}.{quote(join.to_column)}"
        )
        visible, visible_parameters = caller.visibility(join.table, join.alias)
        if visible:
            condition += f" AND {visible}"
            parameters.extend(visible_parameters)
        parts.append(f"{kind} {quote(join.table.logical_name)} AS {quote(join.alias)} ON {condition}")
    return " ".join(parts)


def _where_clause(query: RowQuery, caller: Caller, resolver: Resolver, parameters: list[object]) -> str:
    conditions = []
    visible, visible_parameters = caller.visibility(query.table, ROOT)
    if visible:
        conditions.append(visible)
        parameters.extend(visible_parameters)
    if query.filter is not None:
        sql, filter_parameters = compile_filter(query.filter, resolver)
        conditions.append(sql)
        parameters.extend(filter_parameters)
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def select_rows(store: Store, query: RowQuery, caller: Caller, *, odata: bool = True) -> list[StoredRow]:
    """The rows of one page, root columns first, linked columns as `<alias>.<column>`."""
    resolver = Resolver(query, odata=odata)
    parameters: list[object] = []
    columns = [f"{ROOT}.*"] + [
        f"{quote(join.alias)}.{quote(column.logical_name)} AS {quote(join.alias + '.' + column.logical_name)}"
        for join in query.joins
        for column in join.table.stored_columns()
    ]
    sql = f"SELECT {', '.join(columns)} FROM {_from_clause(query, caller, parameters)}"
    sql += _where_clause(query, caller, resolver, parameters)
    order = [f"{resolver(prop)[0]} {'DESC' if descending else 'ASC'}" for prop, descending in query.orderby]
    order.append(f"{ROOT}.{quote(query.table.primary_id)} ASC")
    sql += " ORDER BY " + ", ".join(order)
    if query.limit is not None:
        sql += " LIMIT ? OFFSET ?"
        parameters += [query.limit, query.offset]
    return store.select(sql, parameters)


def count_rows(store: Store, query: RowQuery, caller: Caller, *, odata: bool = True) -> int:
    resolver = Resolver(query, odata=odata)
    parameters: list[object] = []
    sql = f"SELECT COUNT(*) FROM {_from_clause(query, caller, parameters)}"
    sql += _where_clause(query, caller, resolver, parameters)
    return store.scalar(sql, parameters)


def select_groups(
    store: Store,
    query: RowQuery,
    caller: Caller,
    columns: Sequence[str],
    groups: Sequence[str],
    order: Sequence[str],
    *,
    odata: bool = True,
) -> list[StoredRow]:
    """One row per group of the rows `query` selects: `columns` are SQL expressions with their `AS` names,
    `groups` and `order` SQL expressions or those names; `query.limit` and `query.offset` page the groups."""
    resolver = Resolver(query, odata=odata)
    parameters: list[object] = []
    sql = f"SELECT {', '.join(columns)} FROM {_from_clause(query, caller, parameters)}"
    sql += _where_clause(query, caller, resolver, parameters)
    if groups:
        sql += " GROUP BY " + ", ".join(groups)
    if order:
        sql += " ORDER BY " + ", ".join(order)
    if query.limit is not None:
        sql += " LIMIT ? OFFSET ?"
        parameters += [query.limit, query.offset]
    return store.select(sql, parameters)
