"""Linking rows through navigation properties (`$ref`), and the many-to-many relationships behind some of them.

"Associate and disassociate tables using the Web API":

    POST   <set>(<id>)/<collection-valued nav>/$ref       {"@odata.id": "<URL of the row>"}    add to the collection
    DELETE <set>(<id>)/<collection-valued nav>(<id>)/$ref  (or .../$ref?$id=<URL of the row>)  remove from it
    PUT    <set>(<id>)/<single-valued nav>/$ref           {"@odata.id": "<URL of the row>"}    set the lookup
    DELETE <set>(<id>)/<single-valued nav>/$ref                                                  clear it

A 1:N link is the referencing row's lookup, so linking through either end writes that row; an N:N link is a row of
the relationship's intersect table, which the service writes itself (the table takes no direct write) and removes
with either linked row. Linking takes Append on the row appended and Append To on the row it is appended to, and for
N:N Append on both ("How access to a record is determined"). Linking an N:N pair twice is the duplicate-key error;
removing a link that is not there changes nothing. An N:N collection is read, counted, expanded and filtered with
`any`/`all` as a 1:N one is, through the intersect table.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

from ._binding import collection_navigation
from ._catalog import Catalog, Column, NavigationProperty, Table
from ._errors import DUPLICATE, RESOURCE_NOT_FOUND, WebApiError, bad_request, resource_not_found
from ._expression import And, Comparison, Expression, Property, Related
from ._odata import parse_key
from ._query import RowQuery, select_rows
from ._security import Caller
from ._store import Store, StoredRow, is_polymorphic, target_column

if TYPE_CHECKING:
    from ._environment import Environment

NOT_SUPPORTED: Final = "0x80040800"  # SdkEntityDoesNotSupportMessage: e.g. a direct write to an intersect table
_SEGMENT: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?", re.DOTALL)
_METHODS: Final = {"POST": "Create", "PATCH": "Update", "PUT": "Update", "DELETE": "Delete"}


@dataclass(frozen=True)
class ManyToMany:
    """An N:N relationship seen from `table`: the rows of `other` linked with a row through `intersect`."""

    schema_name: str
    table: Table
    other: Table
    intersect: Table
    own_column: str  # the intersect table's column holding the id of a `table` row
    other_column: str  # and the one holding the id of an `other` row

    def linked_with(self, row_id: str, alias: str = "link") -> Related:
        """A condition on rows of `other`: linked with row `row_id` of `table`."""
        condition = Comparison("eq", Property(self.own_column, alias), row_id)
        return Related(self.intersect, alias, self.other_column, Property(self.other.primary_id), condition)

    def reaching(self, outer: Property, alias: str, inner: Related) -> Related:
        """A condition on rows of `table` (`outer` their id): linked with a row of `other` meeting `inner`, a
        condition on `other` whose `outer` is `Property(self.other_column, alias)`."""
        return Related(self.intersect, alias, self.own_column, outer, inner)


@dataclass(frozen=True)
class RelatedRows:
    """The rows a collection-valued navigation property reaches: through a lookup (1:N) or an intersect table (N:N)."""

    table: Table
    lookup: Column | None = None
    association: ManyToMany | None = None

    def of(self, row_id: str) -> Expression:
        """A condition on rows of `table`: in the collection of the row `row_id`."""
        if self.association is not None:
            return self.association.linked_with(row_id)
        assert self.lookup is not None
        return Comparison("eq", Property(self.lookup.property_name), row_id)


def many_to_many(catalog: Catalog, table: Table, name: str) -> ManyToMany | None:
    """The N:N relationship behind the collection-valued navigation property `name` of `table`, if it is one."""
    for relationship in table.metadata.get("ManyToManyRelationships") or ():
        for own, other in (("1", "2"), ("2", "1")):
            if (
                relationship[f"Entity{own}LogicalName"] == table.logical_name
                and relationship[f"Entity{own}NavigationPropertyName"] == name
            ):
                other_table = catalog.get(relationship[f"Entity{other}LogicalName"])
                intersect = catalog.get(relationship["IntersectEntityName"])
                if other_table is None or intersect is None:
                    return None
                return ManyToMany(
                    relationship["SchemaName"],
                    table,
                    other_table,
                    intersect,
                    relationship[f"Entity{own}IntersectAttribute"],
                    relationship[f"Entity{other}IntersectAttribute"],
                )
    return None


def related_rows(catalog: Catalog, table: Table, name: str) -> RelatedRows | None:
    """What the collection-valued navigation property `name` of `table` reaches, or None if it is not one."""
    children = collection_navigation(catalog, table, name)
    if children is not None:
        return RelatedRows(children[0], lookup=children[1])
    association = many_to_many(catalog, table, name)
    return None if association is None else RelatedRows(association.other, association=association)


def refuse_direct_writes(table: Table, method: str) -> None:
    """An intersect table is written only by linking rows: the service refuses any other write to it."""
    if method in _METHODS and table.metadata.get("IsIntersect"):
        raise WebApiError(
            400,
            NOT_SUPPORTED,
            f"The '{_METHODS[method]}' method does not support entities of type '{table.logical_name}'. "
            "MessageProcessorCache returned MessageProcessor.Empty.",
        )


def forget_links(store: Store, table: Table, row_id: str, caller: Caller) -> None:
    """Remove the N:N links of a row being deleted, as the service deletes its intersect rows with it."""
    for relationship in table.metadata.get("ManyToManyRelationships") or ():
        intersect = store.catalog.get(relationship["IntersectEntityName"])
        for side in ("1", "2"):
            if intersect is not None and relationship[f"Entity{side}LogicalName"] == table.logical_name:
                column = relationship[f"Entity{side}IntersectAttribute"]
                links = Comparison("eq", Property(column), row_id)
                for link in select_rows(store, RowQuery(intersect, filter=links), caller):
                    store.delete(intersect, str(link[intersect.primary_id]))


def answer_ref(
    environment: Environment,
    method: str,
    table: Table,
    row: StoredRow,
    path: list[str],
    body: Any,
    query: str,
    caller: Caller,
) -> None:
    """Carry out a `$ref` request on `row` of `table`; `path` is what stands between the row and `$ref`."""
    match = _SEGMENT.fullmatch(path[0]) if len(path) == 1 else None
    if match is None:
        raise resource_not_found(path[-1] if path else "$ref")
    name, key_text = match.groups()
    navigation = table.navigation.get(name)
    if navigation is not None and key_text is None:
        if method == "PUT":
            target = environment.catalog.get(navigation.target)
            if target is None:
                raise resource_not_found(name)
            parent = _referenced(environment, body, target, name)
            _set_lookup(environment, table, row, navigation, target, parent, caller)
        elif method == "DELETE":
            _clear_lookup(environment, table, row, navigation, caller)
        else:
            raise WebApiError(
                405, "0x80060888", f"'{name}' is single-valued: set its $ref with PUT, or clear it with DELETE."
            )
        return
    related = related_rows(environment.catalog, table, name) if navigation is None else None
    if related is None:
        if navigation is not None or table.column_by_property(name) is not None or name in table.columns:
            raise WebApiError(400, RESOURCE_NOT_FOUND, f"The URI segment '$ref' is invalid after the segment '{name}'.")
        raise resource_not_found(name)
    if method == "POST" and key_text is None:
        other = _referenced(environment, body, related.table, name)
        _link(environment, table, row, related, other, caller)
    elif method == "DELETE":
        other = _removed(environment, related.table, key_text, query, name)
        _unlink(environment, table, row, related, other, caller)
    else:
        raise WebApiError(
            405,
            "0x80060888",
            f"'{name}' is collection-valued: add a row with POST {name}/$ref, remove one with "
            f"DELETE {name}(<id>)/$ref.",
        )


def _referenced(environment: Environment, body: Any, expected: Table, name: str) -> StoredRow:
    """The row a `{"@odata.id": "<URL>"}` body names; it must be a row of the table `name` reaches."""
    reference = body.get("@odata.id") if isinstance(body, dict) else None
    if not isinstance(reference, str) or "(" not in reference or not reference.rstrip().endswith(")"):
        raise bad_request(
            'A $ref request needs a body {"@odata.id": "<URL of the row>"}, e.g. '
            f'{{"@odata.id": "{environment.api_url}/{expected.entity_set_name}(<id>)"}}.'
        )
    target, row_id = environment.resolve_bind(reference.strip())
    if target is not expected:
        raise bad_request(
            f"The row '{reference}' is of type 'Microsoft.Dynamics.CRM.{target.logical_name}'; the navigation "
            f"property '{name}' takes rows of type 'Microsoft.Dynamics.CRM.{expected.logical_name}'."
        )
    found = environment.store.get(target, row_id)
    assert found is not None  # resolve_bind found it
    return found


def _removed(environment: Environment, expected: Table, key_text: str | None, query: str, name: str) -> StoredRow:
    """The row a collection `$ref` DELETE names: as the segment's key, or as the `$id` query option."""
    ids = [value for option, value in parse_qsl(query, keep_blank_values=True) if option == "$id"]
    if key_text is not None and not ids:
        return environment.require(expected, parse_key(key_text))
    if key_text is None and len(ids) == 1:
        return _referenced(environment, {"@odata.id": ids[0]}, expected, name)
    raise bad_request(
        f"Name the row to remove from '{name}' once: DELETE {name}(<id>)/$ref, or "
        f"DELETE {name}/$ref?$id=<URL of the row>."
    )


def _set_lookup(
    environment: Environment,
    child: Table,
    row: StoredRow,
    navigation: NavigationProperty,
    parent: Table,
    parent_row: StoredRow,
    caller: Caller,
) -> None:
    caller.require_access(child, row, "Write")
    caller.require_access(child, row, "Append")
    caller.require_access(parent, parent_row, "AppendTo")
    bind = f"/{parent.entity_set_name}({parent_row[parent.primary_id]})"
    environment.update(child, row, {f"{navigation.name}@odata.bind": bind}, caller)


def _clear_lookup(
    environment: Environment, child: Table, row: StoredRow, navigation: NavigationProperty, caller: Caller
) -> None:
    caller.require_access(child, row, "Write")
    caller.require_access(child, row, "Append")
    column = navigation.column
    if row.get(column.logical_name) is None:
        return
    if is_polymorphic(column) and row.get(target_column(column)) != navigation.target:
        return  # it points at a row of another table, through another navigation property: nothing to remove
    environment.update(child, row, {f"{navigation.name}@odata.bind": None}, caller)


def _child_navigation(child: Table, lookup: Column, parent: Table) -> NavigationProperty:
    """The single-valued navigation property of a 1:N relationship's referencing table."""
    for navigation in child.navigation.values():
        if navigation.column.logical_name == lookup.logical_name and navigation.target == parent.logical_name:
            return navigation
    raise resource_not_found(lookup.logical_name)


def _link(
    environment: Environment, table: Table, row: StoredRow, related: RelatedRows, other: StoredRow, caller: Caller
) -> None:
    association = related.association
    if association is None:
        assert related.lookup is not None
        navigation = _child_navigation(related.table, related.lookup, table)
        _set_lookup(environment, related.table, other, navigation, table, row, caller)
        return
    _require_link_access(association, row, other, caller)
    store, intersect = environment.store, association.intersect
    row_id, other_id = str(row[table.primary_id]), str(other[association.other.primary_id])
    with store.transaction():
        if _links(store, association, row_id, other_id, caller):
            raise WebApiError(412, DUPLICATE, "Cannot insert duplicate key.")
        store.insert(
            intersect,
            {
                intersect.primary_id: str(uuid.uuid4()),
                association.own_column: row_id,
                association.other_column: other_id,
                "versionnumber": store.next_version(),
            },
        )


def _unlink(
    environment: Environment, table: Table, row: StoredRow, related: RelatedRows, other: StoredRow, caller: Caller
) -> None:
    association = related.association
    if association is None:
        assert related.lookup is not None
        lookup = related.lookup
        navigation = _child_navigation(related.table, lookup, table)
        caller.require_access(related.table, other, "Write")
        caller.require_access(related.table, other, "Append")
        if other.get(lookup.logical_name) == row[table.primary_id]:
            _clear_lookup(environment, related.table, other, navigation, caller)
        return
    _require_link_access(association, row, other, caller)
    store, intersect = environment.store, association.intersect
    with store.transaction():
        row_id, other_id = str(row[table.primary_id]), str(other[association.other.primary_id])
        for link_id in _links(store, association, row_id, other_id, caller):
            store.delete(intersect, link_id)


def _require_link_access(association: ManyToMany, row: StoredRow, other: StoredRow, caller: Caller) -> None:
    # "In the case of many-to-many relationships, you must have Append privileges for both tables."
    caller.require_access(association.table, row, "Append")
    caller.require_access(association.other, other, "Append")
    caller.require_access(association.other, other, "AppendTo")


def _links(store: Store, association: ManyToMany, row_id: str, other_id: str, caller: Caller) -> list[str]:
    """The ids of the intersect rows linking the two rows (one at most)."""
    intersect = association.intersect
    both = And(
        (
            Comparison("eq", Property(association.own_column), row_id),
            Comparison("eq", Property(association.other_column), other_id),
        )
    )
    return [str(link[intersect.primary_id]) for link in select_rows(store, RowQuery(intersect, filter=both), caller)]
