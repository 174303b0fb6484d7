"""The metadata endpoints: `EntityDefinitions`, its attributes, keys and relationships, with `$select`,
`$filter` and `$expand` as the Web API supports them on metadata.

Answers come from the EntityDefinitions JSON of `_tables.py`. As on the real service, collections (Attributes,
Keys, relationships) appear only when expanded, and option sets only through a typed attribute cast
(`/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$expand=OptionSet`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from ._catalog import JsonObject
from ._errors import NOT_FOUND, ODATA_ERROR, WebApiError, bad_request
from ._expression import And, Comparison, Expression, Membership, Not, Or, TextMatch
from ._odata import parse_expand, parse_filter, parse_select
from ._tables import entity_definitions

COLLECTIONS: Final = (
    "Attributes",
    "Keys",
    "ManyToOneRelationships",
    "OneToManyRelationships",
    "ManyToManyRelationships",
)
OPTION_SETS: Final = ("OptionSet", "GlobalOptionSet")
_ENUM_LITERAL: Final = re.compile(r"Microsoft\.Dynamics\.CRM\.[A-Za-z]+'([^']*)'")
_KEY: Final = re.compile(r"^(\w+)(?:\((.*)\))?$")
_METADATA_ID: Final = re.compile(r"^[0-9a-fA-F-]{36}$")


def _context(base_url: str, fragment: str) -> str:
    return f"{base_url}/api/data/v9.2/$metadata#{fragment}"


def _find(items: list[JsonObject], key: str | None, kind: str, owner: str | None = None) -> JsonObject:
    """One item of a metadata collection by `(LogicalName='x')`, `('x')` or `(<MetadataId>)`."""
    assert key is not None
    text = key.strip()
    match = re.fullmatch(r"(?:LogicalName=)?'([^']*)'", text)
    for item in items:
        if (match and item.get("LogicalName") == match.group(1)) or (
            _METADATA_ID.match(text) and str(item.get("MetadataId", "")).lower() == text.lower()
        ):
            return item
    name = match.group(1) if match else text
    where = f" on entity '{owner}'" if owner else ""
    raise WebApiError(404, NOT_FOUND, f"Could not find {kind} with name '{name}'{where}.")


def _filter(text: str) -> Expression:
    # Metadata filters compare with enum members (Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist');
    # they compare equal to the member's name.
    return parse_filter(_ENUM_LITERAL.sub(lambda match: "'" + match.group(1) + "'", text))


def _plain(value: Any) -> Any:
    """The comparable value of a metadata property (managed properties compare by their Value)."""
    return value.get("Value") if isinstance(value, dict) and "Value" in value else value


def _matches(item: JsonObject, expression: Expression) -> bool:
    match expression:
        case And(operands):
            return all(_matches(item, operand) for operand in operands)
        case Or(operands):
            return any(_matches(item, operand) for operand in operands)
        case Not(operand):
            return not _matches(item, operand)
        case Comparison(operator, prop, value):
            if prop.name not in item:
                raise bad_request(f"Could not find a property named '{prop.name}' on the metadata type.")
            actual = _plain(item[prop.name])
            if operator == "eq":
                return bool(actual == value)
            if operator == "ne":
                return bool(actual != value)
            raise bad_request(f"The operator '{operator}' is not supported on metadata; use eq or ne.")
        case TextMatch() | Membership():
            raise bad_request("Functions are not supported in metadata queries; filter with eq, ne, and, or, not.")
    raise AssertionError(expression)


def _select(item: JsonObject, select: str | None, type_name: str, expanded: Mapping[str, Any]) -> JsonObject:
    if select is None:
        chosen = {key: value for key, value in item.items() if key not in COLLECTIONS and key not in OPTION_SETS}
    else:
        chosen = {"MetadataId": item.get("MetadataId")}
        if "@odata.type" in item:
            chosen["@odata.type"] = item["@odata.type"]
        for name in parse_select(select):
            if name not in item:
                raise WebApiError(
                    400,
                    ODATA_ERROR,
                    f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'.",
                )
            chosen[name] = item[name]
    chosen.update(expanded)
    return chosen


def _shape(item: JsonObject, query: Mapping[str, str], type_name: str) -> JsonObject:
    """An item with `$select` and `$expand` applied (nested options of one level, as the service allows)."""
    expanded: dict[str, Any] = {}
    if "$expand" in query:
        for option in parse_expand(query["$expand"]):
            if option.name not in item:
                raise WebApiError(
                    400,
                    ODATA_ERROR,
                    f"Could not find a property named '{option.name}' on type 'Microsoft.Dynamics.CRM.{type_name}'.",
                )
            value = item[option.name]
            if isinstance(value, list):
                rows = [entry for entry in value if option.filter is None or _matches(entry, option.filter)]
                nested = {"$select": ",".join(option.select)} if option.select else {}
                value = [_select(entry, nested.get("$select"), _item_type(entry), {}) for entry in rows]
            expanded[option.name] = value
    return _select(item, query.get("$select"), type_name, expanded)


def _item_type(item: JsonObject) -> str:
    return str(item.get("@odata.type", "#Microsoft.Dynamics.CRM.MetadataBase")).rsplit(".", 1)[-1]


def answer_metadata(path: str, query: Mapping[str, str], base_url: str) -> JsonObject:
    """The body answering a GET of `path` (after `/api/data/v9.2/`) under the metadata entity sets."""
    segments = [segment for segment in path.split("/") if segment]
    head = _KEY.match(segments[0])
    if head is None or head.group(1) != "EntityDefinitions":
        raise WebApiError(404, ODATA_ERROR, f"Resource not found for the segment '{segments[0]}'.")
    entities = list(entity_definitions())
    if head.group(2) is None:
        if len(segments) > 1:
            raise WebApiError(404, ODATA_ERROR, f"Resource not found for the segment '{segments[1]}'.")
        chosen = entities
        if "$filter" in query:
            expression = _filter(query["$filter"])
            chosen = [entity for entity in entities if _matches(entity, expression)]
        selected = f"({query['$select']})" if "$select" in query else ""
        return {
            "@odata.context": _context(base_url, f"EntityDefinitions{selected}"),
            "value": [_shape(entity, query, "EntityMetadata") for entity in chosen],
        }
    entity = _find(entities, head.group(2), "entity")
    logical_name = entity["LogicalName"]
    if len(segments) == 1:
        selected = f"({query['$select']})" if "$select" in query else ""
        body = {"@odata.context": _context(base_url, f"EntityDefinitions{selected}/$entity")}
        body.update(_shape(entity, query, "EntityMetadata"))
        return body
    collection = _KEY.match(segments[1])
    if collection is None or collection.group(1) not in COLLECTIONS:
        raise WebApiError(404, ODATA_ERROR, f"Resource not found for the segment '{segments[1]}'.")
    name = collection.group(1)
    items: list[JsonObject] = entity.get(name) or []
    prefix = f"EntityDefinitions('{logical_name}')/{name}"
    if collection.group(2) is not None:
        item = _find(
            items, collection.group(2), "attribute" if name == "Attributes" else name[:-1].lower(), logical_name
        )
        body = {"@odata.context": _context(base_url, f"{prefix}/$entity")}
        body.update(_shape(item, query, _item_type(item)))
        return body
    if len(segments) > 2:
        cast = segments[2]
        if (
            name != "Attributes"
            or not cast.startswith("Microsoft.Dynamics.CRM.")
            or not cast.endswith("AttributeMetadata")
        ):
            raise WebApiError(404, ODATA_ERROR, f"Resource not found for the segment '{cast}'.")
        items = [item for item in items if item.get("@odata.type") == f"#{cast}"]
        prefix += f"/{cast}"
    if "$filter" in query:
        expression = _filter(query["$filter"])
        items = [item for item in items if _matches(item, expression)]
    selected = f"({query['$select']})" if "$select" in query else ""
    return {
        "@odata.context": _context(base_url, prefix + selected),
        "value": [_shape(item, query, _item_type(item)) for item in items],
    }
