"""Parsing FetchXML into a typed query: attributes, filters, orders, link-entities, paging and aggregates.

Conditions become the shared expression nodes of `_expression.py`; their values stay text until the engine
knows each column's type (`_fetch.py`). The paging cookie is the one Dataverse documents: the Web API
returns it inside `@Microsoft.Dynamics.CRM.fetchxmlpagingcookie`, URL-encoded twice, and the client sends it
back in `<fetch paging-cookie="...">`. `<fetch aggregate='true'>` queries keep their `aggregate`, `groupby`,
`dategrouping` and `distinct` attributes and their `<order alias=...>` for `_aggregate.py`; the structural
errors are the query builder's (`QueryBuilder*` in the web service error codes).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Final, Literal, cast, get_args
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from ._errors import BAD_REQUEST, FETCH_XML_INVALID, WebApiError
from ._expression import And, Comparison, Expression, Membership, Not, Or, Property, TextMatch

MAX_COUNT: Final = 5000
AGGREGATE_LIMIT: Final = 50_000  # rows an aggregate query may evaluate (AggregateQueryRecordLimit)
AggregateFunction = Literal["count", "countcolumn", "sum", "avg", "min", "max"]
DateGrouping = Literal["day", "week", "month", "quarter", "year", "fiscal-period", "fiscal-year"]
_AGGREGATE_FUNCTIONS: Final = get_args(AggregateFunction)
_DATE_GROUPINGS: Final = get_args(DateGrouping)
# The query builder's errors, named, numbered and worded as the web service error codes reference has them.
_QUERY_BUILDER: Final = {
    "QueryBuilderAttribute_With_Aggregate": (
        "0x80041107",
        "Attributes can not be returned when aggregate operation is specified.",
    ),
    "QueryBuilderInvalid_Alias": ("0x80041109", "Invalid alias for aggregate operation."),
    "QueryBuilderDeserializeInvalidAggregate": ("0x8004111a", "An error occurred while processing Aggregates in Query"),
    "QueryBuilderDuplicateAlias": ("0x80041130", "FetchXML should have unique aliases."),
    "QueryBuilderAttributeNotAllowedForAggregateOrderBy": (
        "0x80041131",
        "An attribute cannot be specified for an order clause for an aggregate Query. Use an alias.",
    ),
    "QueryBuilderAliasNotAllowedForNonAggregateOrderBy": (
        "0x80041132",
        "An alias cannot be specified for an order clause for a non-aggregate Query. Use an attribute.",
    ),
    "QueryBuilderAttributeRequiredForNonAggregateOrderBy": (
        "0x80041133",
        "An attribute is required for an order clause for a non-aggregate Query.",
    ),
    "QueryBuilderAliasRequiredForAggregateOrderBy": (
        "0x80041134",
        "An alias is required for an order clause for an aggregate Query.",
    ),
    "QueryBuilderInvalidDateGrouping": ("0x80041135", "An invalid value was specified for dategrouping."),
    "QueryBuilderAttributeCannotBeGroupByAndAggregate": (
        "0x80041137",
        "An attribute can either be an aggregate or a Group By but not both",
    ),
}
# QueryBuilderDeserializeInvalidGroupBy, ...InvalidDistinct, ...InvalidDescending
_BOOLEAN_CODES: Final = {"groupby": "0x8004112e", "distinct": "0x80041115", "descending": "0x80041119"}
# Paging attributes `top` cannot accompany, in the order the service names the first one it finds.
_PAGING_ATTRIBUTES: Final = ("page", "count", "paging-cookie", "returntotalrecordcount")
_BOOLEANS: Final = {"true": True, "1": True, "false": False, "0": False}
_ALIAS: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DTD: Final = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)
_COMPARISONS: Final = {"eq": "eq", "ne": "ne", "neq": "ne", "gt": "gt", "ge": "ge", "lt": "lt", "le": "le"}
_TEXT: Final = {
    "like": ("like", False),
    "not-like": ("notlike", False),
    "begins-with": ("startswith", False),
    "not-begin-with": ("startswith", True),
    "ends-with": ("endswith", False),
    "not-end-with": ("endswith", True),
}
_DATES: Final = {"on": "eq", "on-or-after": "ge", "on-or-before": "le"}


def invalid(message: str, code: str = FETCH_XML_INVALID) -> WebApiError:
    return WebApiError(400, code, message)


def unknown_attribute(table: str, name: str) -> WebApiError:
    return invalid(f"'{table}' entity doesn't contain attribute with Name = '{name}'.")


def query_builder_error(name: str, detail: str = "") -> WebApiError:
    """The query builder error `name` (a key of the error codes reference), with an optional explanation."""
    code, message = _QUERY_BUILDER[name]
    return invalid(f"{message} {detail}".strip(), code)


@dataclass(frozen=True)
class FetchAttribute:
    name: str
    alias: str | None = None
    aggregate: AggregateFunction | None = None
    groupby: bool = False
    dategrouping: DateGrouping | None = None
    distinct: bool = False  # countcolumn counts each value once


@dataclass(frozen=True)
class FetchOrder:
    attribute: str
    descending: bool
    alias: str | None = None  # the link-entity it applies to; None for the root entity


@dataclass(frozen=True)
class FetchLink:
    name: str
    from_attribute: str
    to_attribute: str
    alias: str
    link_type: Literal["inner", "outer"]
    attributes: tuple[FetchAttribute, ...] | None
    filter: Expression | None
    links: tuple[FetchLink, ...]
    parent_alias: str | None


@dataclass(frozen=True)
class FetchQuery:
    entity: str
    attributes: tuple[FetchAttribute, ...] | None  # None: all-attributes
    filter: Expression | None
    orders: tuple[FetchOrder, ...]
    links: tuple[FetchLink, ...]
    top: int | None
    count: int | None
    page: int
    paging_cookie: str | None
    distinct: bool
    return_total_record_count: bool
    aggregate: bool = False
    aggregate_limit: int = AGGREGATE_LIMIT
    alias_orders: tuple[tuple[str, bool], ...] = ()  # an aggregate query's `<order alias=...>`, in order


def _required(element: ElementTree.Element, name: str) -> str:
    value = element.get(name)
    if not value:
        raise invalid(f"The '{element.tag}' element needs a '{name}' attribute.")
    return value


def _number(element: ElementTree.Element, name: str, low: int, high: int) -> int | None:
    text = element.get(name)
    if text is None:
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        raise invalid(f"The '{name}' attribute of <fetch> must be a whole number from {low} to {high}, not '{text}'.")
    return int(text)


def _boolean(element: ElementTree.Element, name: str) -> bool:
    text = element.get(name)
    if text is None:
        return False
    if text not in _BOOLEANS:
        message = f"The only valid values for {name} attribute are 'true', 'false', '1', and '0'."
        raise invalid(message, _BOOLEAN_CODES.get(name, FETCH_XML_INVALID))
    return _BOOLEANS[text]


class _Parser:
    def __init__(self, *, aggregate: bool) -> None:
        self.link_numbers: dict[str, int] = {}
        self.aggregate = aggregate
        self.aliases: set[str] = set()
        self.alias_orders: list[tuple[str, bool]] = []

    def attribute(self, element: ElementTree.Element) -> FetchAttribute:
        """One `<attribute>`; in an aggregate query, an aggregate with an alias or a grouping."""
        name, alias = _required(element, "name"), element.get("alias")
        function, dategrouping = element.get("aggregate"), element.get("dategrouping")
        groupby, distinct = _boolean(element, "groupby"), _boolean(element, "distinct")
        if alias is not None:
            if alias in self.aliases:
                raise query_builder_error("QueryBuilderDuplicateAlias")
            self.aliases.add(alias)
        if not self.aggregate:
            return FetchAttribute(name, alias)
        if function is None and not groupby:
            raise query_builder_error("QueryBuilderAttribute_With_Aggregate")
        if function is not None and groupby:
            raise query_builder_error("QueryBuilderAttributeCannotBeGroupByAndAggregate")
        if function is not None and function not in _AGGREGATE_FUNCTIONS:
            raise query_builder_error("QueryBuilderDeserializeInvalidAggregate", f"'{function}' is not a function.")
        if function is not None and (alias is None or not _ALIAS.fullmatch(alias)):
            raise query_builder_error(
                "QueryBuilderInvalid_Alias", f"Give the {function} of '{name}' an alias of letters, digits and _."
            )
        if dategrouping is not None and (not groupby or dategrouping not in _DATE_GROUPINGS):
            raise query_builder_error("QueryBuilderInvalidDateGrouping")
        return FetchAttribute(
            name,
            alias,
            aggregate=cast("AggregateFunction | None", function),
            groupby=groupby,
            dategrouping=cast("DateGrouping | None", dategrouping),
            distinct=distinct,
        )

    def order(self, element: ElementTree.Element, alias: str | None) -> FetchOrder | None:
        """An `<order>`: by attribute in a plain query, by alias in an aggregate one (kept in `alias_orders`)."""
        attribute, by_alias = element.get("attribute"), element.get("alias")
        descending = _boolean(element, "descending")
        if self.aggregate:
            if attribute:
                raise query_builder_error("QueryBuilderAttributeNotAllowedForAggregateOrderBy")
            if not by_alias:
                raise query_builder_error("QueryBuilderAliasRequiredForAggregateOrderBy")
            self.alias_orders.append((by_alias, descending))
            return None
        if by_alias:
            raise query_builder_error("QueryBuilderAliasNotAllowedForNonAggregateOrderBy")
        if not attribute:
            raise query_builder_error("QueryBuilderAttributeRequiredForNonAggregateOrderBy")
        return FetchOrder(attribute, descending, element.get("entityname") or alias)

    def condition(self, element: ElementTree.Element, alias: str | None) -> Expression:
        attribute = _required(element, "attribute")
        operator = _required(element, "operator")
        prop = Property(attribute, element.get("entityname") or alias)
        value = element.get("value")
        values = tuple(child.text or "" for child in element if child.tag == "value")
        if operator in _COMPARISONS:
            return Comparison(_COMPARISONS[operator], prop, self._one(operator, value, values))  # type: ignore[arg-type]
        if operator in ("null", "not-null"):
            return Comparison("eq" if operator == "null" else "ne", prop, None)
        if operator in ("in", "not-in"):
            if not values:
                raise invalid(f"The '{operator}' operator needs <value> elements.")
            return Membership(prop, values, negated=operator == "not-in")
        if operator in _TEXT:
            function, negated = _TEXT[operator]
            match = TextMatch(function, prop, self._one(operator, value, values))  # type: ignore[arg-type]
            return Not(match) if negated else match
        if operator in ("between", "not-between"):
            if len(values) != 2:
                raise invalid(f"The '{operator}' operator needs exactly two <value> elements.")
            between = And((Comparison("ge", prop, values[0]), Comparison("le", prop, values[1])))
            return Not(between) if operator == "not-between" else between
        if operator in ("eq-userid", "ne-userid"):
            return Comparison("eq" if operator == "eq-userid" else "ne", prop, "@userid")
        if operator in _DATES:
            text = self._one(operator, value, values)[:10]
            if operator == "on":
                return And((Comparison("ge", prop, text), Comparison("le", prop, text + "T23:59:59Z")))
            bound = text if operator == "on-or-after" else text + "T23:59:59Z"
            return Comparison(_DATES[operator], prop, bound)  # type: ignore[arg-type]
        raise invalid(f"The operator '{operator}' is not valid or not supported by the sandbox.")

    @staticmethod
    def _one(operator: str, value: str | None, values: tuple[str, ...]) -> str:
        if value is not None:
            return value
        if len(values) == 1:
            return values[0]
        raise invalid(f"The '{operator}' operator needs a value.")

    def filter(self, element: ElementTree.Element, alias: str | None) -> Expression | None:
        kind = element.get("type", "and")
        if kind not in ("and", "or"):
            raise invalid(f"The filter type '{kind}' is not valid: use 'and' or 'or'.")
        operands: list[Expression] = []
        for child in element:
            if child.tag == "condition":
                operands.append(self.condition(child, alias))
            elif child.tag == "filter":
                nested = self.filter(child, alias)
                if nested is not None:
                    operands.append(nested)
            else:
                raise invalid(f"The element '{child.tag}' is not valid inside <filter>.")
        if not operands:
            return None
        if len(operands) == 1:
            return operands[0]
        return And(tuple(operands)) if kind == "and" else Or(tuple(operands))

    def body(
        self, element: ElementTree.Element, alias: str | None
    ) -> tuple[tuple[FetchAttribute, ...] | None, Expression | None, list[FetchOrder], list[FetchLink]]:
        attributes: list[FetchAttribute] | None = []
        filters: list[Expression] = []
        orders: list[FetchOrder] = []
        links: list[FetchLink] = []
        for child in element:
            if child.tag == "attribute":
                if attributes is not None:
                    attributes.append(self.attribute(child))
            elif child.tag == "all-attributes":
                if self.aggregate:
                    raise query_builder_error("QueryBuilderAttribute_With_Aggregate")
                attributes = None
            elif child.tag == "filter":
                parsed = self.filter(child, alias)
                if parsed is not None:
                    filters.append(parsed)
            elif child.tag == "order":
                order = self.order(child, alias)
                if order is not None:
                    orders.append(order)
            elif child.tag == "link-entity":
                links.append(self.link(child, alias))
            else:
                raise invalid(f"The element '{child.tag}' is not valid inside <{element.tag}>.")
        combined = None if not filters else filters[0] if len(filters) == 1 else And(tuple(filters))
        return (None if attributes is None else tuple(attributes)), combined, orders, links

    def link(self, element: ElementTree.Element, parent_alias: str | None) -> FetchLink:
        name = _required(element, "name")
        link_type = element.get("link-type", "inner")
        if link_type not in ("inner", "outer"):
            raise invalid(f"The link-type '{link_type}' is not supported: use 'inner' or 'outer'.")
        alias = element.get("alias")
        if not alias:
            self.link_numbers[name] = self.link_numbers.get(name, 0) + 1
            alias = f"{name}{self.link_numbers[name]}"
        attributes, link_filter, orders, links = self.body(element, alias)
        if orders:
            raise invalid("Order link-entity rows with <order entityname='alias' .../> on the root entity.")
        return FetchLink(
            name=name,
            from_attribute=_required(element, "from"),
            to_attribute=_required(element, "to"),
            alias=alias,
            link_type=link_type,  # type: ignore[arg-type]
            attributes=attributes,
            filter=link_filter,
            links=tuple(links),
            parent_alias=parent_alias,
        )


def parse_fetchxml(text: str) -> FetchQuery:
    """The query a FetchXML document describes; raises WebApiError (400) when it is not valid."""
    if _DTD.search(text):
        # Entity declarations could expand without bound: refuse them before parsing.
        raise invalid("FetchXML must not contain a DOCTYPE or entity declarations.")
    try:
        root = ElementTree.fromstring(text)  # noqa: S314 - DTDs are refused above
    except ElementTree.ParseError as error:
        raise invalid(f"Invalid XML. {error}") from None
    if root.tag != "fetch":
        raise invalid("The root element of a FetchXML query must be <fetch>.")
    entities = [child for child in root if child.tag == "entity"]
    if len(entities) != 1 or len(root) != 1:
        raise invalid("A <fetch> element must contain exactly one <entity> element.")
    top = _number(root, "top", 1, MAX_COUNT)
    for paging in _PAGING_ATTRIBUTES:
        if top is not None and root.get(paging) not in (None, "false", "0"):
            # The service's own wording and InvalidArgument code, as clients have quoted them.
            raise invalid(f"The top attribute can't be specified with paging attribute {paging}", BAD_REQUEST)
    aggregate = _boolean(root, "aggregate")
    entity = entities[0]
    parser = _Parser(aggregate=aggregate)
    attributes, filter_expression, orders, links = parser.body(entity, None)
    count = _number(root, "count", 1, MAX_COUNT)
    return FetchQuery(
        entity=_required(entity, "name"),
        attributes=attributes or None,  # no <attribute> at all returns every column, as all-attributes does
        filter=filter_expression,
        orders=tuple(orders),
        links=tuple(links),
        top=top,
        count=count,
        page=_number(root, "page", 1, 10**9) or 1,
        paging_cookie=root.get("paging-cookie"),
        distinct=root.get("distinct") == "true",
        return_total_record_count=root.get("returntotalrecordcount") == "true",
        aggregate=aggregate,
        aggregate_limit=_number(root, "aggregatelimit", 1, AGGREGATE_LIMIT) or AGGREGATE_LIMIT,
        alias_orders=tuple(parser.alias_orders),
    )


def make_paging_cookie(primary_id: str, first: str, last: str, page: int) -> str:
    """The cookie of a returned page, naming its first and last rows."""
    return (
        f'<cookie page="{page}"><{primary_id} last={quoteattr("{" + last.upper() + "}")} '
        f"first={quoteattr('{' + first.upper() + '}')} /></cookie>"
    )


def paging_cookie_annotation(cookie: str, next_page: int) -> str:
    """The value of `@Microsoft.Dynamics.CRM.fetchxmlpagingcookie`: the cookie URL-encoded twice, in an element."""
    encoded = quote(quote(cookie, safe=""), safe="")
    return f'<cookie pagenumber="{next_page}" pagingcookie="{encoded}" istracking="False" />'
