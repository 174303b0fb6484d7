"""Function parameters written in the URL: `Name(P1=value,P2=@alias)?@alias=value`.

"Use Web API functions" (Passing parameters to a function) shows both forms: values inline
(`GetTimeZoneCodeByLocalizedName(LocalizedStandardName='Pacific Standard Time',LocaleId=1033)`) and, as the best
practice, through parameter aliases given in the query string (`...(LocalizedStandardName=@p1,LocaleId=@p2)?@p1=
'Pacific Standard Time'&@p2=1033`). A record is passed as `{'@odata.id':'contacts(<id>)'}` ("Pass record reference
to a function"), a collection as `['account','contact']` or JSON `["account","contact"]`, an enumeration member as
`Microsoft.Dynamics.CRM.TargetFieldType'ValidForCreate'` (OData URL conventions, enumeration literals).

Literals become JSON values (strings, numbers, booleans, null, lists, objects), so a function's parameters are
checked against its declaration by the same code as an action's JSON body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from ._errors import bad_request

_NUMBER: Final = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[mMdDfF]?$")
_GUID: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ENUM: Final = re.compile(r"^[A-Za-z_][\w.]*'([^']*)'$")
_OPENERS: Final = {"[": "]", "{": "}", "(": ")"}


class Unparsable(ValueError):
    """A literal that is not OData syntax; its text is quoted back in the error."""


def split_arguments(text: str) -> list[tuple[str, str]]:
    """`A=1,B='x,y'` as [("A", "1"), ("B", "'x,y'")]: commas inside quotes and brackets do not split."""
    parts, depth, start, quoted = [], 0, 0, False
    for index, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char in _OPENERS:
            depth += 1
        elif char in _OPENERS.values():
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    arguments = []
    for part in parts:
        if not part.strip():
            continue
        name, equals, value = part.partition("=")
        if not equals or not name.strip():
            raise bad_request(f"The function parameter '{part.strip()}' is not written as Name=value.")
        arguments.append((name.strip(), value.strip()))
    return arguments


def url_arguments(text: str | None, query: Mapping[str, str]) -> dict[str, Any]:
    """The parameters of a function segment, aliases resolved (an alias given no value is null)."""
    values: dict[str, Any] = {}
    for name, literal in split_arguments(text or ""):
        if name in values:
            raise bad_request(f"The parameter '{name}' was specified more than once.")
        if literal.startswith("@"):
            literal = query.get(literal, "null")
        values[name] = parse_literal(literal)
    return values


def parse_literal(text: str) -> Any:
    """One OData literal as a JSON value; raises Unparsable."""
    text = text.strip()
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        return text[1:-1].replace("''", "'")
    if _GUID.match(text):
        return text
    if _NUMBER.match(text):
        number = text.rstrip("mMdDfF")
        return float(number) if any(mark in number for mark in ".eE") else int(number)
    enum = _ENUM.match(text)
    if enum:
        return enum.group(1)
    if text[:1] in "[{":
        return _parse_json(text)
    raise Unparsable(text)


def _parse_json(text: str) -> Any:
    """JSON, or the JSON-like form with single-quoted strings that the documentation's examples use."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    converted, index = [], 0
    while index < len(text):
        char = text[index]
        if char == '"':
            end = _closing(text, index, '"')
            converted.append(text[index : end + 1])
            index = end + 1
        elif char == "'":
            end = index + 1
            while end < len(text) and not (text[end] == "'" and text[end + 1 : end + 2] != "'"):
                end += 2 if text[end] == "'" else 1
            if end >= len(text):
                raise Unparsable(text)
            converted.append(json.dumps(text[index + 1 : end].replace("''", "'")))
            index = end + 1
        else:
            converted.append(char)
            index += 1
    try:
        return json.loads("".join(converted))
    except json.JSONDecodeError:
        raise Unparsable(text) from None


def _closing(text: str, start: int, quote: str) -> int:
    index = start + 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == quote:
            return index
        index += 1
    raise Unparsable(text)
