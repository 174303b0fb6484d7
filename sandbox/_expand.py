"""`$expand`: related rows rendered inside each row, as "Join tables using OData" describes them.

A single-valued navigation property expands to the related row, or null when there is none, the caller may not
read it or it fails the nested `$filter`; only `$select` and `$filter` may be nested in it. A collection-valued one
(1:N, or N:N through its intersect table) expands to the related rows the caller may read (nested `$select`,
`$filter`, `$orderby`, `$top`, up to 5,000 rows, unpaged) followed by `<name>@odata.nextLink`: the filtered
collection's URL with the nested options and no paging information. A query takes up to 15 `$expand` options; a
nested `$expand` is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import quote

from ._associate import RelatedRows, related_rows
from ._binding import FilterBinder
from ._catalog import Column, JsonObject, Table
from ._environment import Environment
from ._errors import bad_request, not_implemented, unknown_property
from ._expression import And, Comparison, Expression, Property, conjunction
from ._odata import ExpandOption
from ._query import RowQuery, select_rows
from ._records import Annotations, NameLookup, render_row
from ._security import Caller
from ._store import StoredRow

MAX_EXPANSIONS: Final = 15
MAX_RELATED: Final = 5000
_LINK_SAFE: Final = ",'()/:@$"


def selected_columns(table: Table, names: Iterable[str] | None) -> list[Column] | None:
    """The columns `$select` names, None for all; an unknown name is the service's unknown-property error."""
    if names is None:
        return None
    columns = []
    for name in names:
        column = table.column_by_property(name)
        if column is None:
            raise unknown_property(table.logical_name, name)
        columns.append(column)
    return columns


def with_currency(table: Table, columns: list[Column] | None) -> list[Column] | None:
    """The columns a row is returned with: the ones selected, and the row's currency when a money column is one of
    them, as "Select columns using OData" shows (`_transactioncurrencyid_value` comes with `revenue`)."""
    currency = table.columns.get("transactioncurrencyid")
    if columns is None or currency is None or currency in columns:
        return columns
    return [*columns, currency] if any(column.attribute_type == "Money" for column in columns) else columns


class Expander:
    """Renders the `$expand` options of one query on `table` for each of its rows."""

    def __init__(
        self,
        environment: Environment,
        table: Table,
        options: list[ExpandOption],
        caller: Caller,
        binder: FilterBinder,
        annotations: Annotations,
        names: NameLookup,
    ) -> None:
        if len(options) > MAX_EXPANSIONS:
            raise bad_request(
                f"A query can include up to {MAX_EXPANSIONS} $expand options; this one has {len(options)}."
            )
        self.environment, self.table, self.options, self.caller = environment, table, options, caller
        self.annotations, self.names = annotations, names
        # Checked and bound once per query, so an error does not depend on which rows there are.
        self.targets: dict[str, tuple[Table, RelatedRows | None, Expression | None, list[Column] | None]] = {}
        for option in options:
            self.targets[option.name] = self._target(option, binder)

    def _target(
        self, option: ExpandOption, binder: FilterBinder
    ) -> tuple[Table, RelatedRows | None, Expression | None, list[Column] | None]:
        """(related table, what links a collection's rows (1:N or N:N) or None, bound nested filter, columns)."""
        navigation = self.table.navigation.get(option.name)
        if navigation is not None:
            if option.top is not None or option.orderby:
                raise bad_request(
                    "Only $select and $filter clause can be provided while doing $expand on many-to-one relationship "
                    "or nested one-to-many relationship."
                )
            target = self.environment.catalog.get(navigation.target)
            if target is None:
                raise not_implemented(
                    f"The table '{navigation.target}' behind '{option.name}' is not part of the sandbox."
                )
            related = None
        else:
            related = related_rows(self.environment.catalog, self.table, option.name)
            if related is None:
                raise unknown_property(self.table.logical_name, option.name)
            target = related.table
        bound = binder.bind(option.filter, target) if option.filter is not None else None
        return target, related, bound, with_currency(target, selected_columns(target, option.select))

    def render(self, row: StoredRow, columns: list[Column] | None) -> JsonObject:
        rendered = render_row(self.table, row, with_currency(self.table, columns), self.annotations, self.names)
        for option in self.options:
            target, related, bound, selected = self.targets[option.name]
            if related is None:
                rendered[option.name] = self._single(row, option, target, bound, selected)
                continue
            rendered[option.name] = self._collection(row, option, target, related, bound, selected)
            rendered[f"{option.name}@odata.nextLink"] = self._collection_link(row, option)
        return rendered

    def _single(
        self,
        row: StoredRow,
        option: ExpandOption,
        target: Table,
        bound: Expression | None,
        columns: list[Column] | None,
    ) -> JsonObject | None:
        value = row.get(self.table.navigation[option.name].column.logical_name)
        if value is None:
            return None
        if bound is None:
            related = self.environment.store.get(target, str(value))
            if related is None or not self.caller.can_read(target, related):
                return None
        else:
            matching = And((Comparison("eq", Property(target.primary_id), str(value)), bound))
            found = select_rows(self.environment.store, RowQuery(target, filter=matching, limit=1), self.caller)
            if not found:
                return None
            related = found[0]
        return render_row(target, related, columns, self.annotations, self.names)

    def _collection(
        self,
        row: StoredRow,
        option: ExpandOption,
        target: Table,
        related: RelatedRows,
        bound: Expression | None,
        columns: list[Column] | None,
    ) -> list[JsonObject]:
        parent = related.of(str(row[self.table.primary_id]))
        query = RowQuery(
            target,
            filter=conjunction([parent, bound]),
            orderby=option.orderby,
            limit=min(MAX_RELATED if option.top is None else option.top, MAX_RELATED),
        )
        rows = select_rows(self.environment.store, query, self.caller)
        return [render_row(target, child, columns, self.annotations, self.names) for child in rows]

    def _collection_link(self, row: StoredRow, option: ExpandOption) -> str:
        """The filtered collection behind an expanded collection, with the nested options appended."""
        path = f"{self.environment.api_url}/{self.table.entity_set_name}({row[self.table.primary_id]})/{option.name}"
        query = "&".join(f"{name}={quote(value, safe=_LINK_SAFE)}" for name, value in option.options)
        return f"{path}?{query}" if query else path
