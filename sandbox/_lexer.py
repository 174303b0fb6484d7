"""The OData lexer: the tokens of a query option's text and the Python values of its literals.

The text arrives URL-decoded. OData has no backslash escape: a quote inside a string literal is doubled, so any
text, quotes included, is one literal and can never change a query's meaning. Double-quoted strings are JSON
strings, allowed only inside a collection such as `PropertyValues=["a","b"]`. A parameter alias (`@p1`) stands
for the text its own query option gives, or for `null` when none does, as "Use OData to query data" says.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final

from ._errors import WebApiError, bad_request
from ._expression import Value

MAX_INT32: Final = 2**31 - 1
_MAX_NUMBER_LENGTH: Final = 40  # far beyond Edm.Decimal; also keeps int() under its digit limit
_QUOTED_LIMIT: Final = 200  # error messages quote at most this much of the offending text
IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEYWORD_LITERALS: Final[dict[str, Value]] = {"null": None, "true": True, "false": False}
RESERVED: Final = frozenset({"and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le"})
_TOKEN: Final = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<json>"(?:[^"\\]|\\.)*")
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})(?![\w:.+-]))
  | (?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![\w-]))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:.+-]))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?(?![\w.:+-]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<alias>@[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punctuation>[(),=\[\]/:])
    """,
    re.VERBOSE,
)
_LOCAL_DATETIME: Final = re.compile(r"\d{4}-\d{2}-\d{2}T[\d:.]*")
_LITERAL_KINDS: Final = frozenset({"string", "datetime", "guid", "date", "number"})


def quoted(text: str) -> str:
    """`text` as an error message quotes it: bounded, so a huge query cannot make a huge answer."""
    return text if len(text) <= _QUOTED_LIMIT else text[:_QUOTED_LIMIT] + "…"


def syntax_error(position: int, text: str, hint: str = "") -> WebApiError:
    return bad_request(f"Syntax error at position {position} in '{quoted(text)}'." + (f" {hint}" if hint else ""))


@dataclass(frozen=True)
class Token:
    kind: str  # a group name of `_TOKEN`, the punctuation itself, or "end"
    text: str
    position: int

    @property
    def is_literal(self) -> bool:
        return self.kind in _LITERAL_KINDS or (self.kind == "name" and self.text in KEYWORD_LITERALS)

    @property
    def is_identifier(self) -> bool:
        """A name that can be a property, navigation property or lambda variable."""
        return (
            self.kind == "name"
            and IDENTIFIER.fullmatch(self.text) is not None
            and self.text not in RESERVED
            and self.text not in KEYWORD_LITERALS
        )

    @property
    def shown(self) -> str:
        """The token as an error message names it."""
        return f"'{quoted(self.text)}'" if self.kind != "end" else "the end"


def unquote(literal: str) -> str:
    return literal[1:-1].replace("''", "'")


def tokenize(text: str, aliases: Mapping[str, str] | None = None) -> list[Token]:
    """The tokens of `text`, ending with an "end" token at `len(text)`; aliases replaced by their values."""
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position] in "'\"":
                # As the service reports it: where the text ran out, not where the literal began.
                raise bad_request(f"There is an unterminated literal at position {len(text)} in '{quoted(text)}'.")
            local = _LOCAL_DATETIME.match(text, position)
            if local:
                raise bad_request(
                    f"The date and time literal '{local.group()}' needs a time zone, as in 2024-01-31T10:00:00Z."
                )
            raise syntax_error(position, text, f"The character '{text[position]}' is not valid here.")
        kind = match.lastgroup or ""
        if kind == "punctuation":
            kind = match.group()
        if kind == "alias":
            if aliases is None:
                raise bad_request(f"The parameter alias '{match.group()}' can't be used here.")
            tokens += _alias_tokens(match.group(), aliases, position)
        elif kind != "space":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _alias_tokens(alias: str, aliases: Mapping[str, str], position: int) -> list[Token]:
    """The tokens an alias stands for, placed where the alias is; an alias given no value is null."""
    value = aliases.get(alias)
    if value is None:
        return [Token("name", "null", position)]
    # An alias's value is text of its own: it cannot use aliases, so substitution always ends.
    return [Token(token.kind, token.text, position) for token in tokenize(value)[:-1]]


def literal_value(token: Token, text: str) -> Value:
    """The Python value of a literal token: strings unquoted with doubled quotes undone."""
    literal = token.text
    match token.kind:
        case "string":
            return unquote(literal)
        case "json":
            try:
                return str(json.loads(literal))
            except ValueError:
                raise bad_request(f"The string {quoted(literal)} is not a valid JSON string.") from None
        case "guid":
            return uuid.UUID(literal)
        case "date":
            try:
                return date.fromisoformat(literal)
            except ValueError:
                raise bad_request(f"The date literal '{literal}' is not a valid date.") from None
        case "datetime":
            try:
                return datetime.fromisoformat(literal.replace("Z", "+00:00"))
            except ValueError:
                raise bad_request(f"The date and time literal '{literal}' is not valid.") from None
        case "number":
            digits = literal.rstrip("mMdDfFlL")
            if len(digits) > _MAX_NUMBER_LENGTH:
                raise bad_request(f"The number literal at position {token.position} is too long.")
            if re.fullmatch(r"-?\d+", digits) and literal[len(digits) :] in ("", "l", "L"):
                return int(digits)
            return Decimal(digits)  # 1.5, 1.5M, 1e3: exact, as Edm.Decimal
        case "name" if literal in KEYWORD_LITERALS:
            return KEYWORD_LITERALS[literal]
    raise syntax_error(token.position, text, f"Expected a value, found {token.shown}.")
