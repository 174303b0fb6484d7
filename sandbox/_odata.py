"""The OData query options Dataverse supports: `$filter`, `$select`, `$orderby`, `$expand`, `$top`, keys.

A regular-expression tokenizer and a recursive-descent parser with OData's precedence (`not` > comparison >
`and` > `or`). The text arrives URL-decoded. OData has no backslash escape: a quote inside a string literal is
doubled, so any text, quotes included, is one literal and can never change a query's meaning. Nothing is
evaluated; the result is a tree of `_expression.py` nodes. Errors are 400s with the OData error code and
the service's wording (`Syntax error at position 7 in 'name eq'.`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Final

from ._errors import WebApiError, bad_request
from ._expression import (
    And,
    Comparison,
    ComparisonOperator,
    Expression,
    Membership,
    Not,
    Or,
    Property,
    TextFunction,
    TextMatch,
    Value,
)

MAX_DEPTH: Final = 100  # parentheses and `not`s; deeper filters are refused, never a RecursionError
_MAX_INT32: Final = 2**31 - 1
_MAX_NUMBER_LENGTH: Final = 40  # far beyond Edm.Decimal; also keeps int() under its digit limit
_QUOTED_LIMIT: Final = 200  # error messages quote at most this much of the offending text
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `'x' lt name` is `name gt 'x'`.
_MIRRORED: Final[dict[ComparisonOperator, ComparisonOperator]] = {
    "eq": "eq",
    "ne": "ne",
    "gt": "lt",
    "ge": "le",
    "lt": "gt",
    "le": "ge",
}
_COMPARISONS: Final[dict[str, ComparisonOperator]] = {operator: operator for operator in _MIRRORED}
_TEXT_FUNCTIONS: Final[dict[str, TextFunction]] = {
    "contains": "contains",
    "startswith": "startswith",
    "endswith": "endswith",
}
_MEMBERSHIP_FUNCTIONS: Final = {"Microsoft.Dynamics.CRM.In": False, "Microsoft.Dynamics.CRM.NotIn": True}
_KEYWORD_LITERALS: Final[dict[str, Value]] = {"null": None, "true": True, "false": False}
_RESERVED: Final = frozenset({"and", "or", "not", *_COMPARISONS})
_TOKEN: Final = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})(?![\w:.+-]))
  | (?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![\w-]))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:.+-]))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?(?![\w.:+-]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punctuation>[(),=\[\]])
    """,
    re.VERBOSE,
)
_LOCAL_DATETIME: Final = re.compile(r"\d{4}-\d{2}-\d{2}T[\d:.]*")
_LITERAL_KINDS: Final = frozenset({"string", "datetime", "guid", "date", "number"})


def _quoted(text: str) -> str:
    return text if len(text) <= _QUOTED_LIMIT else text[:_QUOTED_LIMIT] + "…"


def _syntax_error(position: int, text: str, hint: str = "") -> WebApiError:
    return bad_request(f"Syntax error at position {position} in '{_quoted(text)}'." + (f" {hint}" if hint else ""))


@dataclass(frozen=True)
class _Token:
    kind: str  # a group name of `_TOKEN`, the punctuation itself, or "end"
    text: str
    position: int

    @property
    def is_literal(self) -> bool:
        return self.kind in _LITERAL_KINDS or (self.kind == "name" and self.text in _KEYWORD_LITERALS)

    @property
    def is_property(self) -> bool:
        return (
            self.kind == "name"
            and _IDENTIFIER.fullmatch(self.text) is not None
            and self.text not in _RESERVED
            and self.text not in _KEYWORD_LITERALS
        )

    @property
    def shown(self) -> str:
        """The token as an error message names it."""
        return f"'{_quoted(self.text)}'" if self.kind != "end" else "the end"


def _unquote(literal: str) -> str:
    return literal[1:-1].replace("''", "'")


def _tokenize(text: str) -> list[_Token]:
    """The tokens of `text`, ending with an "end" token at `len(text)`."""
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position] == "'":
                raise bad_request(
                    f"There is an unterminated string literal at position {position} in '{_quoted(text)}'."
                )
            local = _LOCAL_DATETIME.match(text, position)
            if local:
                raise bad_request(
                    f"The date and time literal '{local.group()}' needs a time zone, as in 2024-01-31T10:00:00Z."
                )
            raise _syntax_error(position, text, f"The character '{text[position]}' is not valid here.")
        kind = match.lastgroup or ""
        if kind == "punctuation":
            kind = match.group()
        if kind != "space":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _literal(token: _Token, text: str) -> Value:
    """The Python value of a literal token: strings unquoted with doubled quotes undone."""
    literal = token.text
    match token.kind:
        case "string":
            return _unquote(literal)
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
        case "name" if literal in _KEYWORD_LITERALS:
            return _KEYWORD_LITERALS[literal]
    raise _syntax_error(token.position, text, f"Expected a value, found {token.shown}.")


class _FilterParser:
    """One pass over the tokens of one `$filter`; `depth` bounds the recursion."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self, kind: str, expected: str) -> _Token:
        token = self.peek()
        if token.kind != kind:
            raise _syntax_error(token.position, self.text, f"Expected {expected}, found {token.shown}.")
        self.index += 1
        return token

    def take_keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "name" and token.text == word:
            self.index += 1
            return True
        return False

    def parse(self) -> Expression:
        if self.peek().kind == "end":
            raise bad_request("The $filter query option is empty; give a condition such as name eq 'Contoso'.")
        expression = self.disjunction(0)
        token = self.peek()
        if token.kind != "end":
            raise _syntax_error(token.position, self.text, f"Unexpected {token.shown}.")
        return expression

    def disjunction(self, depth: int) -> Expression:
        operands = [self.conjunction(depth)]
        while self.take_keyword("or"):
            operands.append(self.conjunction(depth))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def conjunction(self, depth: int) -> Expression:
        operands = [self.unary(depth)]
        while self.take_keyword("and"):
            operands.append(self.unary(depth))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self, depth: int) -> Expression:
        if depth > MAX_DEPTH:
            raise bad_request(f"The $filter is nested more than {MAX_DEPTH} levels deep; simplify the condition.")
        token = self.peek()
        if self.take_keyword("not"):
            following = self.peek()
            is_call = following.kind == "name" and not following.is_literal and self.peek(1).kind == "("
            if not (following.kind == "(" or is_call or (following.kind == "name" and following.text == "not")):
                # `not` binds tighter than `eq`: `not name eq 'x'` would negate the column itself.
                raise _syntax_error(
                    token.position,
                    self.text,
                    "'not' applies to a parenthesised condition or a function, as in "
                    "not (name eq 'x') or not contains(name,'x').",
                )
            return Not(self.unary(depth + 1))
        if token.kind == "(":
            self.index += 1
            expression = self.disjunction(depth + 1)
            self.take(")", "')'")
            return expression
        if token.kind == "name" and not token.is_literal and self.peek(1).kind == "(":
            return self.function()
        return self.comparison()

    def operand(self) -> _Token:
        token = self.peek()
        if not (token.is_literal or token.is_property):
            raise _syntax_error(token.position, self.text, f"Expected a property name or a value, found {token.shown}.")
        self.index += 1
        return token

    def comparison(self) -> Expression:
        left = self.operand()
        operator_token = self.peek()
        operator = _COMPARISONS.get(operator_token.text) if operator_token.kind == "name" else None
        if operator is None:
            raise _syntax_error(
                operator_token.position, self.text, f"Expected eq, ne, gt, ge, lt or le, found {operator_token.shown}."
            )
        self.index += 1
        right = self.operand()
        if left.is_literal and right.is_property:
            left, right, operator = right, left, _MIRRORED[operator]
        if left.is_literal:
            raise _syntax_error(left.position, self.text, "Compare a property with a value, as in name eq 'Contoso'.")
        if right.is_property:
            raise bad_request(
                f"Comparing two columns ({left.shown} and {right.shown}) is not supported; compare a column "
                "with a value."
            )
        return Comparison(operator, Property(left.text), _literal(right, self.text))

    def property(self) -> Property:
        token = self.peek()
        if not token.is_property:
            raise _syntax_error(token.position, self.text, f"Expected a property name, found {token.shown}.")
        self.index += 1
        return Property(token.text)

    def function(self) -> Expression:
        name = self.take("name", "a function name")
        self.take("(", "'('")
        if name.text in _TEXT_FUNCTIONS:
            prop = self.property()
            self.take(",", "','")
            value = self.peek()
            if value.kind != "string":
                raise bad_request(f"The function '{name.text}' needs a string value, as in {name.text}(name,'text').")
            self.index += 1
            self.take(")", "')'")
            return TextMatch(_TEXT_FUNCTIONS[name.text], prop, _unquote(value.text))
        if name.text in _MEMBERSHIP_FUNCTIONS:
            return self.membership(name.text, negated=_MEMBERSHIP_FUNCTIONS[name.text])
        raise bad_request(f"Unknown function {name.shown}.")

    def membership(self, function: str, *, negated: bool) -> Expression:
        """`Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['a','b'])`, arguments in any order."""
        usage = f"{function}(PropertyName='name',PropertyValues=['a','b'])"
        prop: Property | None = None
        values: list[Value] | None = None
        while True:
            argument = self.take("name", "PropertyName or PropertyValues")
            self.take("=", "'='")
            if argument.text == "PropertyName" and prop is None:
                token = self.take("string", "the property name in quotes")
                name = _unquote(token.text)
                if not _IDENTIFIER.fullmatch(name):
                    raise bad_request(f"'{_quoted(name)}' is not a property name; write {usage}.")
                prop = Property(name)
            elif argument.text == "PropertyValues" and values is None:
                values = self.string_list()
            else:
                raise bad_request(f"Unexpected or repeated parameter {argument.shown}; write {usage}.")
            if self.peek().kind != ",":
                break
            self.index += 1
        self.take(")", "')'")
        if prop is None or not values:
            raise bad_request(f"{function} needs a property and at least one value; write {usage}.")
        return Membership(prop, tuple(values), negated)

    def string_list(self) -> list[Value]:
        """`['a','b']`: the values stay strings, as the function's `Collection(Edm.String)` parameter takes."""
        self.take("[", "'['")
        values: list[Value] = []
        while self.peek().kind != "]":
            if values:
                self.take(",", "','")
            values.append(_unquote(self.take("string", "a value in quotes").text))
        self.index += 1
        return values


def parse_filter(text: str) -> Expression:
    """The expression tree of a `$filter` value."""
    return _FilterParser(text).parse()


def _names(text: str, option: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    for name in names:
        if not _IDENTIFIER.fullmatch(name):
            shown = f"'{_quoted(name)}' is not a property name" if name else "an entry is empty"
            raise bad_request(f"Syntax error in {option}='{_quoted(text)}': {shown}.")
    return names


def parse_select(text: str) -> list[str]:
    """The property names of `$select=name,revenue`."""
    return _names(text, "$select")


def parse_orderby(text: str) -> list[tuple[Property, bool]]:
    """`$orderby=name asc,createdon desc` as (property, descending) pairs."""
    order = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise bad_request(
                f"Syntax error in $orderby='{_quoted(text)}': '{_quoted(part.strip())}' is not 'property [asc|desc]'."
            )
        _names(words[0], "$orderby")
        order.append((Property(words[0]), words[-1] == "desc" and len(words) == 2))
    return order


def parse_top(text: str) -> int:
    """`$top`: a non-negative Edm.Int32."""
    if not re.fullmatch(r"\d{1,10}", text.strip()) or int(text) > _MAX_INT32:
        raise bad_request(
            f"Invalid value '{_quoted(text)}' for $top query option found. "
            "The $top query option requires a non-negative integer value."
        )
    return int(text)


def parse_bool_option(name: str, text: str) -> bool:
    """A boolean query option such as `$count=true`."""
    # `True` and stray spaces are forgiven: the sandbox checks what clients mean, not their casing.
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise bad_request(
            f"Invalid value '{_quoted(text)}' for {name} query option found. Valid values are 'true' and 'false'."
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


def _split_top_level(text: str, separator: str) -> list[str]:
    """`text` split on `separator` outside parentheses and string literals."""
    parts: list[str] = []
    start, depth, quoted = 0, 0, False
    for index, character in enumerate(text):
        if character == "'":
            quoted = not quoted  # a doubled quote toggles twice, staying inside the literal
        elif quoted:
            continue
        elif character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
            if depth < 0:
                raise _syntax_error(index, text, "This ')' has no matching '('.")
        elif character == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if quoted:
        raise bad_request(f"There is an unterminated string literal in '{_quoted(text)}'.")
    if depth:
        raise _syntax_error(len(text), text, "A '(' is not closed.")
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
                f"Syntax error in $expand='{_quoted(text)}': '{_quoted(item.strip())}' is not "
                "'navigationproperty' or 'navigationproperty($select=...)'."
            )
        nested: dict[str, str] = {}
        if match.group(2) is not None:
            for part in _split_top_level(match.group(2), ";"):
                name, equals, value = part.partition("=")
                name = name.strip()
                if not equals or name not in _NESTED_OPTIONS or name in nested:
                    raise bad_request(
                        f"The option '{_quoted(name)}' inside $expand is not supported or is repeated; "
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
            )
        )
    return options


def parse_key(text: str) -> uuid.UUID | dict[str, Value]:
    """The key inside `accounts(...)`: a GUID, or alternate-key pairs such as `accountnumber='A-1'`."""
    usage = f"Bad key segment '({_quoted(text)})': use a GUID or name=value pairs such as accountnumber='A-1'."
    tokens = _tokenize(text)
    if len(tokens) == 2 and tokens[0].kind == "guid":
        return uuid.UUID(tokens[0].text)
    key: dict[str, Value] = {}
    index = 0
    while True:
        window = tokens[index : index + 3]
        if len(window) < 3:
            raise bad_request(usage)
        name, equals, value = window
        if not name.is_property or equals.kind != "=" or not value.is_literal or value.text == "null":
            raise bad_request(usage)
        if name.text in key:
            raise bad_request(f"The key property '{name.text}' is given twice in '({_quoted(text)})'.")
        key[name.text] = _literal(value, text)
        index += 3
        if tokens[index].kind == "end":
            return key
        if tokens[index].kind != ",":
            raise bad_request(usage)
        index += 1
