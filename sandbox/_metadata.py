"""The metadata entity sets of the Web API: `EntityDefinitions` (with its attributes, keys and relationships),
`RelationshipDefinitions` and `GlobalOptionSetDefinitions`, with `$select`, `$filter` and `$expand` as the real
service supports them on metadata.

Answers are read from the EntityDefinitions JSON of `_tables.py`, never changed. As on the real service:
collection-valued navigation properties appear only when expanded; `$select` and `$filter` accept the properties
of the declared type only (the base `AttributeMetadata` unless the path casts, e.g.
`/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata`), so option sets come only through such a cast;
`MetadataId` is always returned. Metadata filters have their own small grammar (enum literals such as
`Microsoft.Dynamics.CRM.OwnershipTypes'UserOwned'`, `RequiredLevel/Value`, no functions), evaluated here.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from ._catalog import JsonObject
from ._errors import NOT_FOUND, WebApiError, bad_request, resource_not_found, unknown_property
from ._tables import entity_definitions

_NAMESPACE: Final = "Microsoft.Dynamics.CRM."
_EMPTY_ID: Final = "00000000-0000-0000-0000-000000000000"
_GUID: Final = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

# EntityMetadata's collection-valued navigation properties: the type of their items and their alternate key.
_COLLECTIONS: Final[Mapping[str, tuple[str, str]]] = {
    "Attributes": ("AttributeMetadata", "LogicalName"),
    "Keys": ("EntityKeyMetadata", "LogicalName"),
    "ManyToOneRelationships": ("OneToManyRelationshipMetadata", "SchemaName"),
    "OneToManyRelationships": ("OneToManyRelationshipMetadata", "SchemaName"),
    "ManyToManyRelationships": ("ManyToManyRelationshipMetadata", "SchemaName"),
}
# Single-valued navigation properties of the attribute types derived from EnumAttributeMetadata.
_OPTION_SETS: Final = ("OptionSet", "GlobalOptionSet")
# Abstract base types: their properties are those every derived type shares.
_BASE_TYPES: Final = {
    "AttributeMetadata": "AttributeMetadata",
    "RelationshipMetadataBase": "RelationshipMetadata",
    "OptionSetMetadataBase": "OptionSetMetadata",
}
# Enum-typed properties and their enum types: compared only with literals such as OwnershipTypes'UserOwned'.
_ENUMS: Final = {
    "OwnershipType": "OwnershipTypes",
    "AttributeType": "AttributeTypeCode",
    "RequiredLevel/Value": "AttributeRequiredLevel",
    "OptionSetType": "OptionSetType",
    "RelationshipType": "RelationshipType",
    "EntityKeyIndexStatus": "EntityKeyIndexStatus",
}


def _type_of(item: JsonObject, declared: str) -> str:
    """The metadata type of `item`: its `@odata.type`, else what its shape says, else the declared type."""
    if "@odata.type" in item:
        return str(item["@odata.type"]).rsplit(".", 1)[-1]
    if "OptionSetType" in item:
        return "BooleanOptionSetMetadata" if item["OptionSetType"] == "Boolean" else "OptionSetMetadata"
    return declared


@cache
def _relationships() -> tuple[JsonObject, ...]:
    found: dict[str, JsonObject] = {}
    for entity in entity_definitions():
        for name in ("OneToManyRelationships", "ManyToOneRelationships", "ManyToManyRelationships"):
            for relationship in entity.get(name) or ():
                found.setdefault(relationship["SchemaName"], relationship)
    return tuple(found.values())


@cache
def _global_option_sets() -> tuple[JsonObject, ...]:
    found: dict[str, JsonObject] = {}
    for entity in entity_definitions():
        for attribute in entity["Attributes"]:
            option_set = attribute.get("OptionSet")
            if option_set and option_set.get("IsGlobal"):
                found.setdefault(option_set["Name"], option_set)
    return tuple(found.values())


@cache
def _keys_by_type() -> Mapping[str, frozenset[str]]:
    """Every property name seen on items of each concrete type."""
    seen: dict[str, set[str]] = defaultdict(set)
    for entity in entity_definitions():
        seen["EntityMetadata"] |= entity.keys() - _COLLECTIONS.keys()
        for attribute in entity["Attributes"]:
            seen[_type_of(attribute, "AttributeMetadata")] |= attribute.keys() - set(_OPTION_SETS)
            if attribute.get("OptionSet"):
                seen[_type_of(attribute["OptionSet"], "OptionSetMetadata")] |= attribute["OptionSet"].keys()
        for key in entity.get("Keys") or ():
            seen["EntityKeyMetadata"] |= key.keys()
    for relationship in _relationships():
        seen[_type_of(relationship, "RelationshipMetadata")] |= relationship.keys()
    return {name: frozenset(keys - {"@odata.type"}) for name, keys in seen.items()}


@cache
def _properties(type_name: str) -> frozenset[str]:
    """The structural properties of a metadata type, as the data shows them (the real service returns all)."""
    seen = _keys_by_type()
    for base, suffix in _BASE_TYPES.items():
        derived = [keys for name, keys in seen.items() if name.endswith(suffix)]
        if type_name == base:
            return frozenset.intersection(*derived) if derived else frozenset()
        if type_name.endswith(suffix):
            return seen.get(type_name, frozenset()) | _properties(base)
    return seen.get(type_name, frozenset())


@cache
def _enum_types() -> frozenset[str]:
    """The attribute types derived from EnumAttributeMetadata: those carrying an option set."""
    return frozenset(
        _type_of(attribute, "AttributeMetadata")
        for entity in entity_definitions()
        for attribute in entity["Attributes"]
        if "OptionSet" in attribute
    )


def _navigation(type_name: str) -> tuple[str, ...]:
    if type_name == "EntityMetadata":
        return tuple(_COLLECTIONS)
    return _OPTION_SETS if type_name in _enum_types() else ()


_ROOTS: Final[Mapping[str, tuple[str, str, Callable[[], tuple[JsonObject, ...]]]]] = {
    "EntityDefinitions": ("EntityMetadata", "LogicalName", entity_definitions),
    "RelationshipDefinitions": ("RelationshipMetadataBase", "SchemaName", _relationships),
    "GlobalOptionSetDefinitions": ("OptionSetMetadataBase", "Name", _global_option_sets),
}
# What an item of each collection is called in a not-found message; the others hold relationships.
_NOUNS: Final = {
    "EntityDefinitions": "entity",
    "Attributes": "attribute",
    "Keys": "key",
    "GlobalOptionSetDefinitions": "option set",
}


_TOKEN: Final = re.compile(
    rf"""\s*(?:
      (?P<enum>{re.escape(_NAMESPACE)}(?P<enum_type>\w+)'(?P<member>[^']*)')
    | (?P<string>'(?:[^']|'')*')
    | (?P<guid>{_GUID})(?![\w-])
    | (?P<number>-?\d+(?:\.\d+)?)(?![\w.])
    | (?P<name>[A-Za-z_]\w*(?:/[A-Za-z_]\w*)*)
    | (?P<punct>[(),])
    | (?P<bad>\S)
    )""",
    re.VERBOSE,
)
_LITERALS: Final = {"true": True, "false": False, "null": None}
_OPERATORS: Final = ("eq", "ne", "gt", "ge", "lt", "le")
Predicate = Callable[[JsonObject], bool]


@dataclass(frozen=True)
class _Token:
    kind: str  # enum, string, guid, number, literal, name, punct, end
    text: str
    position: int
    value: Any = None
    enum_type: str | None = None


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(text):
        kind = str(match.lastgroup)
        raw, start, value = match.group(kind), match.start(kind), None
        if kind == "bad":
            raise _syntax_error(text, start)
        if kind == "enum":
            value = match.group("member")
        elif kind == "string":
            value = raw[1:-1].replace("''", "'")
        elif kind == "guid":
            value = raw.lower()
        elif kind == "number":
            value = float(raw) if "." in raw else int(raw)
        elif raw in _LITERALS:
            kind, value = "literal", _LITERALS[raw]
        tokens.append(_Token(kind, raw, start, value, match.group("enum_type")))
    return [*tokens, _Token("end", "", len(text))]


def _syntax_error(text: str, position: int, expected: str = "") -> WebApiError:
    return bad_request(f"Syntax error at position {position} in '{text}'{': ' + expected if expected else ''}.")


class _FilterParser:
    """Metadata `$filter`: comparisons joined by and/or/not and parentheses; no functions, no lambdas."""

    def __init__(self, text: str, declared: str) -> None:
        self.text, self.declared = text, declared
        self.tokens = _tokenize(text)
        self.index = 0

    def parse(self) -> Predicate:
        predicate = self._or()
        if self.tokens[self.index].kind != "end":
            raise self._error("expected 'and', 'or' or the end")
        return predicate

    def _error(self, expected: str) -> WebApiError:
        return _syntax_error(self.text, self.tokens[self.index].position, expected)

    def _accept(self, word: str) -> bool:
        token = self.tokens[self.index]
        if token.kind in ("name", "punct") and token.text == word:
            self.index += 1
            return True
        return False

    def _or(self) -> Predicate:
        operands = [self._and()]
        while self._accept("or"):
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else lambda item: any(operand(item) for operand in operands)

    def _and(self) -> Predicate:
        operands = [self._unary()]
        while self._accept("and"):
            operands.append(self._unary())
        return operands[0] if len(operands) == 1 else lambda item: all(operand(item) for operand in operands)

    def _unary(self) -> Predicate:
        if self._accept("not"):
            operand = self._unary()
            return lambda item: not operand(item)
        if self._accept("("):
            inner = self._or()
            if not self._accept(")"):
                raise self._error("expected ')'")
            return inner
        return self._comparison()

    def _comparison(self) -> Predicate:
        left = self.tokens[self.index]
        if left.kind != "name" or left.text in ("and", "or", "not", *_OPERATORS):
            raise self._error("expected a property name")
        self.index += 1
        if self.tokens[self.index].text == "(":
            raise bad_request(
                f"The function '{left.text}' is not supported in metadata queries: "
                "filter with eq, ne, gt, lt, and, or, not."
            )
        operator = self.tokens[self.index].text
        if self.tokens[self.index].kind != "name" or operator not in _OPERATORS:
            raise self._error("expected eq, ne, gt or lt")
        if operator in ("ge", "le"):
            raise bad_request(f"The operator '{operator}' is not supported in metadata queries; use eq, ne, gt or lt.")
        self.index += 1
        right = self.tokens[self.index]
        if right.kind not in ("enum", "string", "guid", "number", "literal"):
            raise self._error("expected a value")
        self.index += 1
        return _compare(self.declared, left.text, operator, right)


def _compare(declared: str, path: str, operator: str, literal: _Token) -> Predicate:
    head, _, rest = path.partition("/")
    if head not in _properties(declared):
        raise unknown_property(declared, head)
    if "/" in rest:
        raise bad_request(
            f"Can't filter on '{path}': metadata filters reach one level down, as in RequiredLevel/Value."
        )
    enum = _ENUMS.get(path)
    if (enum is not None or literal.kind == "enum") and literal.value is not None and literal.enum_type != enum:
        wanted = f"{_NAMESPACE}{enum}'<member>'" if enum else "a literal of its own type"
        raise bad_request(f"Can't compare '{path}' with {literal.text}: use {wanted}.")
    mismatch = bad_request(f"Can't compare '{path}' with {literal.text}: the types differ.")

    def value_of(item: JsonObject) -> Any:
        value = item.get(head)
        if isinstance(value, dict) and "LocalizedLabels" in value:  # the real service can't filter on labels
            raise bad_request(f"Can't filter on '{path}': labels can't be compared in metadata queries.")
        if rest and value is not None:
            if not isinstance(value, dict) or rest not in value:
                raise bad_request(f"Can't filter on '{path}': '{head}' has no property '{rest}'.")
            value = value[rest]
        if isinstance(value, dict | list):
            raise bad_request(f"Can't filter on '{path}': compare a primitive, such as {path}/Value.")
        return value

    def test(item: JsonObject) -> bool:
        actual, wanted = value_of(item), literal.value
        if isinstance(actual, str) and literal.kind == "guid":
            actual = actual.lower()
        if actual is None or wanted is None:
            return (actual is wanted) == (operator == "eq") if operator in ("eq", "ne") else False
        if isinstance(actual, bool) != isinstance(wanted, bool) or isinstance(actual, str) != isinstance(wanted, str):
            raise mismatch
        if operator in ("eq", "ne"):
            return bool(actual == wanted) == (operator == "eq")
        if isinstance(actual, str | bool):
            raise bad_request(f"'{operator}' compares numbers; '{path}' isn't one.")
        return bool(actual > wanted) if operator == "gt" else bool(actual < wanted)

    return test


def _filtered(items: list[JsonObject], text: str, declared: str) -> list[JsonObject]:
    predicate = _FilterParser(text, declared).parse()
    return [item for item in items if predicate(item)]


_NAME: Final = re.compile(r"[A-Za-z_]\w*")
_EXPAND_ITEM: Final = re.compile(r"([A-Za-z_]\w*)\s*(?:\((.*)\))?", re.DOTALL)
_SEGMENT: Final = re.compile(r"([A-Za-z_][\w.]*)(?:\((.*)\))?", re.DOTALL)


def _split(text: str, separator: str) -> list[str]:
    """`text` split on `separator` outside parentheses and string literals."""
    parts, depth, quoted, start = [], 0, False, 0
    for index, character in enumerate(text):
        if character == "'":
            quoted = not quoted  # a doubled quote toggles twice, staying inside the literal
        elif not quoted and character in "()":
            depth += 1 if character == "(" else -1
            if depth < 0:
                raise _syntax_error(text, index, "this ')' has no '('")
        elif not quoted and not depth and character == separator:
            parts.append(text[start:index].strip())
            start = index + 1
    if depth or quoted:
        raise _syntax_error(text, len(text), "a '(' or a quote is not closed")
    return [*parts, text[start:].strip()]


def _names(text: str, option: str) -> list[str]:
    names = _split(text, ",")
    for name in names:
        if not _NAME.fullmatch(name):
            raise bad_request(f"Syntax error in {option}='{text}': '{name}' is not a property name.")
    return names


@dataclass(frozen=True)
class _Expansion:
    name: str
    select: list[str] | None
    filter: str | None


@dataclass(frozen=True)
class _Query:
    select: list[str] | None
    expand: list[_Expansion]
    filter: str | None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> _Query:
        expand = []
        for item in _split(query["$expand"], ",") if "$expand" in query else ():
            match = _EXPAND_ITEM.fullmatch(item)
            if match is None:
                raise bad_request(
                    f"Syntax error in $expand: '{item}' is not 'Name' or 'Name($select=...;$filter=...)'."
                )
            nested: dict[str, str] = {}
            for option in _split(match.group(2), ";") if match.group(2) else ():
                name, equals, value = (part.strip() for part in option.partition("="))
                if not equals or name not in ("$select", "$filter") or name in nested:
                    raise bad_request(
                        f"Inside a metadata $expand only $select and $filter may be used, once each: '{item}'."
                    )
                nested[name] = value
            select = _names(nested["$select"], "$select") if "$select" in nested else None
            expand.append(_Expansion(match.group(1), select, nested.get("$filter")))
        select = _names(query["$select"], "$select") if "$select" in query else None
        return cls(select, expand, query.get("$filter"))

    def selection(self) -> str:
        """The select list of the context URL: expanded properties are named when selected or narrowed."""
        parts = list(self.select or ())
        for expansion in self.expand:
            if expansion.select is not None:
                parts.append(f"{expansion.name}({','.join(expansion.select)})")
            elif self.select is not None:
                parts.append(expansion.name)
        return f"({','.join(parts)})" if parts else ""


def _shape(item: JsonObject, declared: str, select: list[str] | None, expand: list[_Expansion]) -> JsonObject:
    """`item` as the service writes it for its declared type: selected properties, then expansions."""
    actual = _type_of(item, declared)
    body: JsonObject = {} if actual == declared else {"@odata.type": f"#{_NAMESPACE}{actual}"}
    if select is None:
        hidden = {"@odata.type", *_navigation(actual)}
        body.update((name, value) for name, value in item.items() if name not in hidden)
        body.update((name, None) for name in sorted(_properties(actual) - body.keys()))
    else:
        body["MetadataId"] = item.get("MetadataId")
        for name in select:
            if name not in _properties(declared) and name not in _navigation(declared):
                raise unknown_property(declared, name)
            if name not in _navigation(declared):  # a navigation property is returned only when expanded
                body[name] = item.get(name)
    for expansion in expand:
        body[expansion.name] = _expand(item, declared, expansion)
    return body


def _expand(item: JsonObject, declared: str, expansion: _Expansion) -> Any:
    if expansion.name not in _navigation(declared):
        raise unknown_property(declared, expansion.name)
    if expansion.name in _COLLECTIONS:
        item_type = _COLLECTIONS[expansion.name][0]
        rows = list(item.get(expansion.name) or ())
        if expansion.filter is not None:
            rows = _filtered(rows, expansion.filter, item_type)
        return [_shape(row, item_type, expansion.select, []) for row in rows]
    if expansion.filter is not None:
        raise bad_request(f"$filter needs a collection; {expansion.name} is a single option set.")
    # Local or global, both properties hold the attribute's options (as the service documents).
    option_set = item.get("OptionSet")
    return None if option_set is None else _shape(option_set, _type_of(option_set, ""), expansion.select, [])


def _no_segment(segment: str) -> WebApiError:
    return resource_not_found(segment)


def _find(items: list[JsonObject], key: str, key_name: str, noun: str, owner: str | None) -> tuple[JsonObject, str]:
    """One item by MetadataId or by its alternate key, and that key as the context URL writes it."""
    text = key.strip()
    if re.fullmatch(_GUID, text):
        wanted, field, shown = text.lower(), "MetadataId", f"({text.lower()})"
        found = next((item for item in items if str(item.get("MetadataId", "")).lower() == wanted), None)
    else:
        match = re.fullmatch(r"(?:(\w+)\s*=\s*)?'((?:[^']|'')*)'", text)
        if match is None or match.group(1) not in (None, key_name):
            raise bad_request(f"Bad key '({text})': use a MetadataId or {key_name}='...'.")
        wanted, field = match.group(2).replace("''", "'"), key_name
        shown = "('" + wanted.replace("'", "''") + "')"
        found = next((item for item in items if item.get(key_name) == wanted), None)
    if found is None:
        if noun == "entity" and field != "MetadataId":  # the wording of RetrieveEntity, which this request runs
            raise WebApiError(404, NOT_FOUND, f"Could not find an entity with name {wanted} and id {_EMPTY_ID}.")
        described = "id" if field == "MetadataId" else "name" if noun == "attribute" else field
        where = f" on entity '{owner}'" if owner else ""
        raise WebApiError(404, NOT_FOUND, f"Could not find {noun} with {described} '{wanted}'{where}.")
    return found, shown


def _cast(value: Any, declared: str, segment: str) -> tuple[Any, str]:
    """The items (or the item) of a type-cast segment such as `Microsoft.Dynamics.CRM.PicklistAttributeMetadata`."""
    wanted = segment.removeprefix(_NAMESPACE)
    if wanted != declared and not (declared in _BASE_TYPES and wanted.endswith(_BASE_TYPES[declared])):
        raise bad_request(
            f"The type '{segment}' specified in the URI is neither a base type nor a sub-type of the "
            f"previously-specified type '{_NAMESPACE}{declared}'."
        )
    if isinstance(value, list):
        return [item for item in value if _type_of(item, declared) == wanted], wanted
    if _type_of(value, declared) != wanted:
        raise _no_segment(segment)
    return value, wanted


def _walk(path: str) -> tuple[Any, str, str, str]:
    """Follow `path`: the value it names (a list, an item or a property), its type, the context path and kind."""
    segments = path.strip("/").split("/")
    match = _SEGMENT.fullmatch(segments[0])
    if match is None or match.group(1) not in _ROOTS:
        raise _no_segment(segments[0])
    declared, key_name, load = _ROOTS[match.group(1)]
    value: Any = list(load())
    parts, noun, owner = [match.group(1)], _NOUNS.get(match.group(1), "relationship"), None
    pending: tuple[int, str] | None = None  # a key the context URL keeps only if the path goes on through it
    for index, segment in enumerate(segments):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise _no_segment(segment)
        name, key = match.groups()
        if index and name.startswith(_NAMESPACE) and key is None:
            value, declared = _cast(value, declared, name)
            parts.append(name)
            continue
        if index:
            if isinstance(value, list):
                raise _no_segment(segment)
            if pending:
                parts[pending[0]] += pending[1]
                pending = None
            if name in _COLLECTIONS and name in _navigation(declared):
                owner = value.get("LogicalName")
                value, (declared, key_name) = list(value.get(name) or ()), _COLLECTIONS[name]
                noun = _NOUNS.get(name, "relationship")
            elif name in _navigation(declared) and key is None:
                value = value.get("OptionSet")
                declared = _type_of(value or {}, "OptionSetMetadata")
            elif name in _properties(declared) and key is None and index == len(segments) - 1:
                return value.get(name), declared, "/".join([*parts, name]), "property"
            else:
                raise _no_segment(segment)
            parts.append(name)
        if key is not None:
            value, shown = _find(value, key, key_name, noun, owner)
            pending = (len(parts) - 1, shown)
    if value is None:
        raise _no_segment(segments[-1])
    return value, declared, "/".join(parts), "collection" if isinstance(value, list) else "item"


def answer_metadata(path: str, query: Mapping[str, str], base_url: str) -> JsonObject:
    """The body answering a GET of `path` (after `/api/data/v9.2/`) under a metadata entity set."""
    value, declared, context_path, kind = _walk(path)
    context = f"{base_url}/api/data/v9.2/$metadata#{context_path}"
    if kind == "property":
        return {"@odata.context": context, "value": value}
    options = _Query.parse(query)
    if kind == "item":
        if options.filter is not None:
            raise bad_request("$filter applies to collections; this path names a single item.")
        return {"@odata.context": f"{context}{options.selection()}/$entity"} | _shape(
            value, declared, options.select, options.expand
        )
    if options.filter is not None:
        if path.startswith("GlobalOptionSetDefinitions"):
            raise bad_request("GlobalOptionSetDefinitions doesn't support $filter: retrieve one by Name or MetadataId.")
        value = _filtered(value, options.filter, declared)
    rows = [_shape(item, declared, options.select, options.expand) for item in value]
    return {"@odata.context": f"{context}{options.selection()}", "value": rows}
