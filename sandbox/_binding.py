"""Binding a parsed OData `$filter` to the table it filters, the caller and the moment it runs.

"Filter rows using OData" lets a filter reach related rows: through single-valued navigation properties
(`primarycontactid/createdby/fullname eq 'x'`, any depth) and, with the lambda operators `any` and `all`, through
collection-valued ones (`contact_customer_accounts/any(c: c/fullname eq 'x')`, `any()`, nested lambdas; an N:N
collection through its intersect table). Both become `Related` conditions: `EXISTS` over the related table, limited
to the rows the caller may read, exactly as `$expand` shows only readable related rows, so no filter can tell a
caller about a row they cannot retrieve. A path through a missing or unreadable row reads as null. The service
refuses a collection reached through a lookup (`primarycontactid/contact_customer_accounts/any(...)`), and so does
the sandbox. Query functions become comparisons (`_functions.py`); their `PropertyName` is a column's logical name.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from ._catalog import Catalog, Column, Table
from ._directory import BUSINESS_UNIT_ID
from ._errors import FETCH_XML_INVALID, WebApiError, bad_request, not_implemented, unknown_property
from ._expression import (
    And,
    ColumnComparison,
    Comparison,
    Expression,
    Lambda,
    Membership,
    Not,
    Or,
    Property,
    QueryFunction,
    Related,
    TextMatch,
)
from ._functions import Moment, expand_function, require_known
from ._security import Caller
from ._store import is_polymorphic, target_column

if TYPE_CHECKING:
    from ._associate import ManyToMany

# A lambda variable (None: the row being filtered) -> its table and SQL alias (None: the query's own row).
Scope = dict[str | None, tuple[Table, str | None]]


def collection_navigation(tables: Iterable[Table], table: Table, name: str) -> tuple[Table, Column] | None:
    """The child table and lookup behind a collection-valued navigation property of `table`."""
    for relationship in table.metadata.get("OneToManyRelationships") or ():
        if relationship["ReferencedEntityNavigationPropertyName"] == name:
            for child in tables:
                if child.logical_name == relationship["ReferencingEntity"]:
                    column = child.columns.get(relationship["ReferencingAttribute"])
                    if column is not None:
                        return child, column
    return None


class FilterBinder:
    """Binds the filters of one request: its caller's visibility and one moment for every relative date."""

    def __init__(self, catalog: Catalog, caller: Caller, now: datetime) -> None:
        self.catalog = catalog
        self.caller = caller
        self.moment = Moment(now, caller.system_user_id, str(BUSINESS_UNIT_ID))
        self._numbers = itertools.count(1)

    def bind(self, expression: Expression, table: Table) -> Expression:
        """`expression`, parsed for `table`, as conditions `compile_filter` can turn into SQL."""
        return self._bind(expression, {None: (table, None)})

    def _bind(self, expression: Expression, scope: Scope) -> Expression:
        match expression:
            case And(operands):
                return And(tuple(self._bind(operand, scope) for operand in operands))
            case Or(operands):
                return Or(tuple(self._bind(operand, scope) for operand in operands))
            case Not(operand):
                return Not(self._bind(operand, scope))
            case Comparison(operator, prop, value):
                return self._through(prop, scope, lambda bound: Comparison(operator, bound, value))
            case TextMatch(function, prop, value):
                return self._through(prop, scope, lambda bound: TextMatch(function, bound, value))
            case Membership(prop, values, negated):
                return self._through(prop, scope, lambda bound: Membership(bound, values, negated))
            case ColumnComparison(operator, left, right):
                alias = scope[left.alias][1]
                return ColumnComparison(operator, Property(left.name, alias), Property(right.name, alias))
            case Lambda():
                return self._lambda(expression, scope)
            case QueryFunction():
                return self._function(expression, scope)
            case Related():
                return expression
        raise AssertionError(f"unknown expression {expression!r}")

    def _alias(self) -> str:
        return f"nav{next(self._numbers)}"

    def _related(self, table: Table, column: str, outer: Property, condition: Expression | None) -> Related:
        alias = self._alias()
        visible, parameters = self.caller.visibility(table, alias)
        return Related(table, alias, column, outer, condition, (visible, tuple(parameters)))

    def _through(self, prop: Property, scope: Scope, build: Callable[[Property], Expression]) -> Expression:
        """`build` applied to `prop`, reached through its path of single-valued navigation properties."""
        table, alias = scope[prop.alias]
        hops = []
        for name in prop.path:
            navigation = table.navigation.get(name)
            if navigation is None:
                if collection_navigation(self.catalog, table, name) is not None:
                    raise bad_request(
                        f"'{name}' is a collection-valued navigation property: filter on its rows with any or all, "
                        f"as in {name}/any(x: x/{prop.name} ne null)."
                    )
                raise unknown_property(table.logical_name, name)
            target = self.catalog.get(navigation.target)
            if target is None:
                raise not_implemented(f"The table '{navigation.target}' behind '{name}' is not part of the sandbox.")
            hops.append((navigation.column, target))
            table = target
        if not hops:
            return build(Property(prop.name, alias))
        hop_aliases = [self._alias() for _ in hops]
        condition = build(Property(prop.name, hop_aliases[-1]))
        for index in reversed(range(len(hops))):
            lookup, target = hops[index]
            visible, parameters = self.caller.visibility(target, hop_aliases[index])
            condition = Related(
                target,
                hop_aliases[index],
                target.primary_id,
                Property(lookup.property_name, hop_aliases[index - 1] if index else alias),
                condition,
                (visible, tuple(parameters)),
                when_absent=True,
            )
        return condition

    def _lambda(self, expression: Lambda, scope: Scope) -> Expression:
        navigation = expression.navigation
        table, alias = scope[navigation.alias]
        if navigation.path:
            raise bad_request(
                f"Conditions on a collection-valued navigation property nested in a lookup navigation property "
                f"('{'/'.join((*navigation.path, navigation.name))}') aren't supported."
            )
        children = collection_navigation(self.catalog, table, navigation.name)
        if children is None:
            from ._associate import many_to_many  # deferred: linking rows builds on this module

            association = many_to_many(self.catalog, table, navigation.name)
            if association is not None:
                return self._linked(expression, scope, association, Property(table.primary_id, alias))
            if navigation.name in table.navigation:
                raise bad_request(
                    f"'{navigation.name}' is a single-valued navigation property; any and all apply to "
                    "collection-valued ones."
                )
            raise unknown_property(table.logical_name, navigation.name)
        child, lookup = children
        outer = Property(table.primary_id, alias)
        related = self._related(child, lookup.logical_name, outer, None)
        if is_polymorphic(lookup):
            related = replace(related, discriminator=(target_column(lookup), table.logical_name))
        predicate = None
        if expression.predicate is not None:
            inner: Scope = {**scope, expression.variable: (child, related.alias)}
            predicate = self._bind(expression.predicate, inner)
        if expression.operator == "all":
            # All related rows meet the predicate: none fails it. An empty collection meets any `all`.
            return Not(replace(related, condition=Not(predicate) if predicate is not None else None))
        return replace(related, condition=predicate)

    def _linked(self, expression: Lambda, scope: Scope, association: ManyToMany, outer: Property) -> Expression:
        """`any`/`all` over an N:N collection: the other table's rows, reached through the intersect table."""
        link = self._alias()
        other = association.other
        related = self._related(other, other.primary_id, Property(association.other_column, link), None)
        predicate = None
        if expression.predicate is not None:
            predicate = self._bind(expression.predicate, {**scope, expression.variable: (other, related.alias)})
        if expression.operator == "all":
            inner = replace(related, condition=Not(predicate) if predicate is not None else None)
            return Not(association.reaching(outer, link, inner))
        return association.reaching(outer, link, replace(related, condition=predicate))

    def _function(self, function: QueryFunction, scope: Scope) -> Expression:
        require_known(function.name)
        if len(scope) > 1:
            raise not_implemented("The sandbox does not emulate query functions inside a lambda expression.")
        table, alias = scope[None]
        column = table.columns.get(function.property)
        if column is None:
            raise WebApiError(
                400,
                FETCH_XML_INVALID,
                f"'{table.logical_name}' entity doesn't contain attribute with Name = '{function.property}' "
                "and NameMapping = 'Logical'.",
            )
        return expand_function(function, column, Property(column.property_name, alias), self.moment)
