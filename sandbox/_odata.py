"""The OData query options other than `$filter`'s grammar: `$select`, `$orderby`, `$expand`, `$top`, `$count`, keys.

Tokens and literals come from `_lexer.py`, `$filter` from `_filter.py` (re-exported here). Errors are 400s with
the OData error code and the service's wording.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from ._errors import bad_request
from ._expression import Expression, Property, Value
from ._filter import MAX_DEPTH, parse_filter
from ._lexer import IDENTIFIER, MAX_INT32, literal_value, quoted, syntax_error, tokenize

__all__ = [
    "MAX_DEPTH",
    "ExpandOption",
    "parse_bool_option",
    "parse_expand",
    "parse_filter",
    "parse_key",
    "parse_orderby",
    "parse_select",
    "parse_top",
]

_ALIAS: Final = re.compile(r"@[A-Za-z_][A-Za-z0-9_]*")


def _names(text: str, option: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    for name in names:
        if not IDENTIFIER.fullmatch(name):
            shown = f"'{quoted(name)}' is not a property name" if name else "an entry is empty"
            raise bad_request(f"Syntax error in {option}='{quoted(text)}': {shown}.")
    return names


def parse_select(text: str) -> list[str]:
    """The property names of `$select=name,revenue`."""
    return _names(text, "$select")


def parse_orderby(text: str, aliases: Mapping[str, str] | None = None) -> list[tuple[Property, bool]]:
    """`$orderby=name asc,createdon desc` as (property, descending) pairs; `@p1 asc` takes alias `@p1`'s name."""
    if aliases is not None:
        text = _ALIAS.sub(lambda match: aliases.get(match.group(), match.group()), text)
    order = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise bad_request(
                f"Syntax error in $orderby='{quoted(text)}': '{quoted(part.strip())}' is not 'property [asc|desc]'."
            )
        _names(words[0], "$orderby")
        order.append((Property(words[0]), words[-1] == "desc" and len(words) == 2))
    return order


def parse_top(text: str) -> int:
    """`$top`: a non-negative Edm.Int32."""
    if not re.fullmatch(r"\d{1,10}", text.strip()) or int(text) > MAX_INT32:
        raise bad_request(
            f"Invalid value '{quoted(text)}' for $top query option found. "
            "The $top query option requires a non-negative integer value."
        )
    return int(text)


def parse_bool_option(name: str, text: str) -> bool:
    """A boolean query option such as `$count=true`."""
    # `True` and stray spaces are forgiven: the sandbox checks what clients mean, not their casing.
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise bad_request(
            f"Invalid value '{quoted(text)}' for {name} query option found. Valid values are 'true' and 'false'."
        )
    return value == "true"


@dataclass(frozen=True)
class ExpandOption:
    """One `$expand` item: a navigation property and its nested `$select`, `$filter`, `$orderby`, `$top`."""

    name: str
    select: list[str] | None = None
    filter: Expression | None = None
    orderby: list[tuple[Property, bool]] = field(default_factory=list)
    top: int | None = None
    options: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # the nested options as written


def _split_top_level(text: str, separator: str) -> list[str]:
    """`text` split on `separator` outside parentheses and string literals."""
    parts: list[str] = []
    start, depth, in_literal = 0, 0, False
    for index, character in enumerate(text):
        if character == "'":
            in_literal = not in_literal  # a doubled quote toggles twice, staying inside the literal
        elif in_literal:
            continue
        elif character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
            if depth < 0:
                raise syntax_error(index, text, "This ')' has no matching '('.")
        elif character == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if in_literal:
        raise bad_request(f"There is an unterminated literal in '{quoted(text)}'.")
    if depth:
        raise syntax_error(len(text), text, "A '(' is not closed.")
    parts.append(text[start:])
    return parts


_EXPAND_ITEM: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*", re.DOTALL)
_NESTED_OPTIONS: Final = ("$select", "$filter", "$orderby", "$top")


def parse_expand(text: str) -> list[ExpandOption]:
    """`$expand=primarycontactid($select=fullname;$filter=...),parentaccountid`: nested options split by `;`."""
    options = []
    for item in _split_top_level(text, ","):
        match = _EXPAND_ITEM.fullmatch(item)
        if not match:
            raise bad_request(
                f"Syntax error in $expand='{quoted(text)}': '{quoted(item.strip())}' is not "
                "'navigationproperty' or 'navigationproperty($select=...)'."
            )
        nested: dict[str, str] = {}
        if match.group(2) is not None:
            for part in _split_top_level(match.group(2), ";"):
                name, equals, value = part.partition("=")
                name = name.strip()
                if not equals or name not in _NESTED_OPTIONS or name in nested:
                    raise bad_request(
                        f"The option '{quoted(name)}' inside $expand is not supported or is repeated; "
                        "use each of $select, $filter, $orderby and $top at most once."
                    )
                nested[name] = value.strip()
        options.append(
            ExpandOption(
                name=match.group(1),
                select=parse_select(nested["$select"]) if "$select" in nested else None,
                filter=parse_filter(nested["$filter"]) if "$filter" in nested else None,
                orderby=parse_orderby(nested["$orderby"]) if "$orderby" in nested else [],
                top=parse_top(nested["$top"]) if "$top" in nested else None,
                options=tuple(nested.items()),
            )
        )
    return options


def parse_key(text: str) -> uuid.UUID | dict[str, Value]:
    """The key inside `accounts(...)`: a GUID, or alternate-key pairs such as `accountnumber='A-1'`."""
    usage = f"Bad key segment '({quoted(text)})': use a GUID or name=value pairs such as accountnumber='A-1'."
    tokens = tokenize(text)
    if len(tokens) == 2 and tokens[0].kind == "guid":
        return uuid.UUID(tokens[0].text)
    key: dict[str, Value] = {}
    index = 0
    while True:
        window = tokens[index : index + 3]
        if len(window) < 3:
            raise bad_request(usage)
        name, equals, value = window
        if not name.is_identifier or equals.kind != "=" or not value.is_literal or value.text == "null":
            raise bad_request(usage)
        if name.text in key:
            raise bad_request(f"The key property '{name.text}' is given twice in '({quoted(text)})'.")
        key[name.text] = literal_value(value, text)
        index += 3
        if tokens[index].kind == "end":
            return key
        if tokens[index].kind != ",":
            raise bad_request(usage)
        index += 1
