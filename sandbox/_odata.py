"""Parsing the OData query options Dataverse supports: `$filter`, `$select`, `$orderby`, `$expand`, keys.

A small tokenizer and a recursive-descent parser with OData's precedence (`not` > comparison > `and` > `or`).
The text arrives URL-decoded. String literals use doubled single quotes, so any text, quotes included, is one
literal and cannot change the query's meaning. Errors are 400s with the OData error code, as from the service.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Final

from ._errors import bad_request
from ._expression import (
    And,
    Comparison,
    ComparisonOperator,
    Expression,
    Membership,
    Not,
    Or,
    Property,
    TextMatch,
    Value,
)

MAX_DEPTH: Final = 100
_COMPARISONS: Final = ("eq", "ne", "gt", "ge", "lt", "le")
_MIRRORED: Final[dict[str, ComparisonOperator]] = {
    "eq": "eq",
    "ne": "ne",
    "gt": "lt",
    "ge": "le",
    "lt": "gt",
    "le": "ge",
}
_TOKEN: Final = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![\w-]))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\d:T]))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?(?![\w.]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<comma>,)
  | (?P<equals>=)
  | (?P<open_bracket>\[)
  | (?P<close_bracket>\])
  | (?P<slash>/)
    """,
    re.VERBOSE,
)
_UNTERMINATED: Final = re.compile(r"'(?:[^']|'')*$")


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int


def tokenize(text: str) -> list[Token]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if _UNTERMINATED.match(text, position):
                raise bad_request(f"There is an unterminated string literal at position {position} in '{text}'.")
            raise bad_request(
                f"Syntax error: character '{text[position]}' is not valid at position {position} in '{text}'."
            )
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    return tokens


def _literal(token: Token) -> Value:
    """The Python value of a literal token (strings unquoted, doubled quotes undone)."""
    text = token.text
    match token.kind:
        case "string":
            return text[1:-1].replace("''", "'")
        case "guid":
            return uuid.UUID(text)
        case "date":
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise bad_request(f"'{text}' is not a valid date.") from None
        case "datetime":
            try:
                return datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise bad_request(f"'{text}' is not a valid date and time.") from None
        case "number":
            digits = text.rstrip("mMdDfFlL")
            if re.fullmatch(r"-?\d+", digits) and not text[-1:].isalpha():
                return int(digits)
            return Decimal(digits)
        case "name" if text in ("true", "false"):
            return text == "true"
        case "name" if text == "null":
            return None
    raise bad_request(f"Syntax error at position {token.position}: expected a value, found '{text}'.")


def _is_literal(token: Token) -> bool:
    return token.kind in ("string", "guid", "date", "datetime", "number") or (
        token.kind == "name" and token.text in ("true", "false", "null")
    )


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> Token | None:
        index = self.index + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, kind: str | None = None, text: str | None = None) -> Token:
        token = self.peek()
        if token is None or (kind and token.kind != kind) or (text and token.text != text):
            expected = text or kind or "more input"
            position = token.position if token else len(self.text)
            raise bad_request(f"Syntax error at position {position} in '{self.text}': expected {expected}.")
        self.index += 1
        return token

    def at_keyword(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "name" and token.text == word

    def parse(self) -> Expression:
        if not self.tokens:
            raise bad_request("The $filter is empty.")
        expression = self.or_expression()
        if self.peek() is not None:
            token = self.peek()
            assert token is not None
            raise bad_request(f"Syntax error at position {token.position} in '{self.text}'.")
        return expression

    def descend(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise bad_request(f"The $filter is nested more than {MAX_DEPTH} levels deep.")

    def or_expression(self) -> Expression:
        operands = [self.and_expression()]
        while self.at_keyword("or"):
            self.index += 1
            operands.append(self.and_expression())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expression(self) -> Expression:
        operands = [self.unary()]
        while self.at_keyword("and"):
            self.index += 1
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Expression:
        self.descend()
        try:
            if self.at_keyword("not"):
                self.index += 1
                return Not(self.unary())
            return self.primary()
        finally:
            self.depth -= 1

    def primary(self) -> Expression:
        token = self.peek()
        if token is None:
            raise bad_request(f"Syntax error at position {len(self.text)} in '{self.text}': the expression ends early.")
        if token.kind == "open":
            self.index += 1
            expression = self.or_expression()
            self.take("close")
            return expression
        following = self.peek(1)
        if token.kind == "name" and following is not None and following.kind == "open" and not _is_literal(token):
            return self.function()
        return self.comparison()

    def comparison(self) -> Expression:
        left = self.take()
        operator_token = self.take("name")
        right = self.take()
        if operator_token.text not in _COMPARISONS:
            raise bad_request(
                f"Syntax error at position {operator_token.position} in '{self.text}': "
                f"'{operator_token.text}' is not a comparison operator (eq, ne, gt, ge, lt, le)."
            )
        operator = _MIRRORED[operator_token.text]
        if _is_literal(left) and not _is_literal(right):
            left, right = right, left  # 'x' eq name: the same test as name eq 'x', mirrored
        else:
            operator = _MIRRORED[operator]
        if left.kind != "name" or _is_literal(left):
            raise bad_request(f"Syntax error at position {left.position} in '{self.text}': expected a property name.")
        if not _is_literal(right):
            raise bad_request(
                f"Syntax error at position {right.position} in '{self.text}': comparing two properties is not "
                "supported; compare a property with a value."
            )
        return Comparison(operator, Property(left.text), _literal(right))

    def function(self) -> Expression:
        name = self.take("name")
        self.take("open")
        function = name.text
        if function in ("contains", "startswith", "endswith"):
            prop = self.take("name")
            self.take("comma")
            value = self.take()
            self.take("close")
            if value.kind != "string":
                raise bad_request(f"The function '{function}' needs a string value, as in {function}(name,'text').")
            return TextMatch(function, Property(prop.text), str(_literal(value)))  # type: ignore[arg-type]
        if function in ("Microsoft.Dynamics.CRM.In", "Microsoft.Dynamics.CRM.NotIn"):
            return self.membership(negated=function.endswith("NotIn"))
        raise bad_request(f"Unknown function '{function}'.")

    def membership(self, *, negated: bool) -> Expression:
        arguments: dict[str, object] = {}
        while True:
            name = self.take("name").text
            self.take("equals")
            if self.peek() is not None and self.peek().kind == "open_bracket":  # type: ignore[union-attr]
                self.index += 1
                values: list[Value] = []
                while self.peek() is not None and self.peek().kind != "close_bracket":  # type: ignore[union-attr]
                    values.append(_literal(self.take()))
                    if self.peek() is not None and self.peek().kind == "comma":  # type: ignore[union-attr]
                        self.index += 1
                self.take("close_bracket")
                arguments[name] = values
            else:
                arguments[name] = _literal(self.take())
            if self.peek() is not None and self.peek().kind == "comma":  # type: ignore[union-attr]
                self.index += 1
                continue
            self.take("close")
            break
        prop, members = arguments.get("PropertyName"), arguments.get("PropertyValues")
        if not isinstance(prop, str) or not isinstance(members, list):
            raise bad_request("Microsoft.Dynamics.CRM.In needs PropertyName='column' and PropertyValues=['a','b'].")
        return Membership(Property(prop), tuple(members), negated)


def parse_filter(text: str) -> Expression:
    """The expression tree of a `$filter` value."""
    return _Parser(text).parse()


def _names(text: str, option: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise bad_request(f"Syntax error in {option}: '{name}' is not a property name.")
    return names


def parse_select(text: str) -> list[str]:
    return _names(text, "$select")


def parse_orderby(text: str) -> list[tuple[Property, bool]]:
    order = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise bad_request(f"Syntax error in $orderby: '{part.strip()}' is not 'property [asc|desc]'.")
        _names(words[0], "$orderby")
        order.append((Property(words[0]), len(words) == 2 and words[1] == "desc"))
    return order


def parse_top(text: str) -> int:
    if not re.fullmatch(r"\d{1,9}", text.strip()):
        raise bad_request(
            f"Invalid value '{text}' for $top query option found. "
            "The $top query option requires a non-negative integer value."
        )
    return int(text)


def parse_bool_option(name: str, text: str) -> bool:
    if text.strip().lower() not in ("true", "false"):
        raise bad_request(f"Invalid value '{text}' for {name} query option found. Valid values are 'true' and 'false'.")
    return text.strip().lower() == "true"


@dataclass(frozen=True)
class ExpandOption:
    """One `$expand` item: a navigation property and its nested options."""

    name: str
    select: list[str] | None = None
    filter: Expression | None = None
    orderby: list[tuple[Property, bool]] = field(default_factory=list)
    top: int | None = None


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on `separator` outside parentheses and string literals."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for character in text:
        if character == "'":
            quoted = not quoted
        elif not quoted and character == "(":
            depth += 1
        elif not quoted and character == ")":
            depth -= 1
            if depth < 0:
                raise bad_request(f"Syntax error: unbalanced parentheses in '{text}'.")
        if character == separator and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(character)
    if depth != 0 or quoted:
        raise bad_request(f"Syntax error: unbalanced parentheses or quotes in '{text}'.")
    parts.append("".join(current))
    return parts


def parse_expand(text: str) -> list[ExpandOption]:
    options = []
    for item in _split_top_level(text, ","):
        item = item.strip()
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?", item, re.DOTALL)
        if not match:
            raise bad_request(f"Syntax error in $expand: '{item}'.")
        nested: dict[str, str] = {}
        if match.group(2):
            for part in _split_top_level(match.group(2), ";"):
                name, equals, value = part.partition("=")
                if not equals or name.strip() not in ("$select", "$filter", "$orderby", "$top"):
                    raise bad_request(f"The option '{name.strip()}' is not supported inside $expand.")
                nested[name.strip()] = value
        options.append(
            ExpandOption(
                name=match.group(1),
                select=parse_select(nested["$select"]) if "$select" in nested else None,
                filter=parse_filter(nested["$filter"]) if "$filter" in nested else None,
                orderby=parse_orderby(nested["$orderby"]) if "$orderby" in nested else [],
                top=parse_top(nested["$top"]) if "$top" in nested else None,
            )
        )
    return options


def parse_key(text: str) -> uuid.UUID | dict[str, Value]:
    """The key inside `entityset(...)`: a GUID, or alternate-key `name=value` pairs."""
    tokens = tokenize(text)
    if len(tokens) == 1 and tokens[0].kind == "guid":
        return uuid.UUID(tokens[0].text)
    key: dict[str, Value] = {}
    index = 0
    while index < len(tokens):
        if len(tokens) - index < 3:
            raise bad_request(f"Bad key segment '({text})': expected a GUID or name=value pairs.")
        name, equals, value = tokens[index : index + 3]
        if name.kind != "name" or equals.kind != "equals" or not _is_literal(value):
            raise bad_request(f"Bad key segment '({text})': expected a GUID or name=value pairs.")
        key[name.text] = _literal(value)
        index += 3
        if index < len(tokens):
            if tokens[index].kind != "comma":
                raise bad_request(f"Bad key segment '({text})': separate key pairs with commas.")
            index += 1
            if index == len(tokens):
                raise bad_request(f"Bad key segment '({text})': a key pair is missing after the comma.")
    if not key:
        raise bad_request(f"Bad key segment '({text})': expected a GUID or name=value pairs.")
    return key
