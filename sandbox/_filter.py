"""The `$filter` grammar: a recursive-descent parser with OData's precedence (`not` > comparison > `and` > `or`).

What it reads, as "Filter rows using OData" lists it: comparisons of a property with a value or with another
column of the same row, `and`/`or`/`not` and parentheses, `contains`/`startswith`/`endswith`, Dataverse query
functions (`Microsoft.Dynamics.CRM.<Name>(PropertyName='...',...)`), paths through single-valued navigation
properties (`primarycontactid/createdby/fullname`), and the lambda operators `any`/`all` over collection-valued
ones, nested as deep as the depth limit allows. Nothing is evaluated; the result is a tree of `_expression.py`
nodes, which `_binding.py` ties to tables. Errors are 400s with the OData error code and the service's wording
(`Syntax error at position 7 in 'name eq'.`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ._errors import bad_request, not_implemented
from ._expression import (
    And,
    ColumnComparison,
    Comparison,
    ComparisonOperator,
    Expression,
    Lambda,
    LambdaOperator,
    Not,
    Or,
    Property,
    QueryFunction,
    TextFunction,
    TextMatch,
    Value,
)
from ._lexer import IDENTIFIER, Token, literal_value, quoted, syntax_error, tokenize, unquote

MAX_DEPTH: Final = 100  # parentheses, `not`s and lambdas; deeper filters are refused, never a RecursionError
FUNCTION_NAMESPACE: Final = "Microsoft.Dynamics.CRM."
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
_LAMBDAS: Final[dict[str, LambdaOperator]] = {"any": "any", "all": "all"}
# OData's built-in functions the Dataverse Web API does not take in `$filter`.
_ODATA_FUNCTIONS: Final = frozenset(
    {
        "concat",
        "indexof",
        "length",
        "substring",
        "tolower",
        "toupper",
        "trim",
        "year",
        "month",
        "day",
        "hour",
        "minute",
        "second",
        "fractionalseconds",
        "date",
        "time",
        "totaloffsetminutes",
        "now",
        "mindatetime",
        "maxdatetime",
        "round",
        "floor",
        "ceiling",
        "cast",
        "isof",
        "geo.distance",
        "geo.length",
        "geo.intersects",
        "substringof",
    }
)
_PARAMETERS: Final = ("PropertyName", "PropertyValue", "PropertyValues", "PropertyValue1", "PropertyValue2")


class _FilterParser:
    """One pass over the tokens of one `$filter`; `depth` bounds the recursion."""

    def __init__(self, text: str, aliases: Mapping[str, str] | None) -> None:
        self.text = text
        self.tokens = tokenize(text, aliases)
        self.index = 0
        self.variables: list[str] = []  # lambda variables in scope, innermost last

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self, kind: str, expected: str) -> Token:
        token = self.peek()
        if token.kind != kind:
            raise syntax_error(token.position, self.text, f"Expected {expected}, found {token.shown}.")
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
            raise syntax_error(token.position, self.text, f"Unexpected {token.shown}.")
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

    def is_call(self) -> bool:
        token = self.peek()
        return token.kind == "name" and not token.is_literal and self.peek(1).kind == "("

    def unary(self, depth: int) -> Expression:
        if depth > MAX_DEPTH:
            raise bad_request(f"The $filter is nested more than {MAX_DEPTH} levels deep; simplify the condition.")
        token = self.peek()
        if self.take_keyword("not"):
            following = self.peek()
            if not (following.kind == "(" or self.is_call() or following.text == "not" or self.is_lambda()):
                # `not` binds tighter than `eq`: `not name eq 'x'` would negate the column itself.
                raise syntax_error(
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
        if self.is_call():
            return self.function(depth)
        if self.is_lambda():
            return self.lambda_expression(depth)
        return self.comparison()

    def is_lambda(self) -> bool:
        """Whether a member path ending in `/any(` or `/all(` starts here."""
        offset = 0
        while self.peek(offset).kind == "name" and self.peek(offset + 1).kind == "/":
            offset += 2
            if self.peek(offset).text in _LAMBDAS and self.peek(offset + 1).kind == "(":
                return True
        return False

    def member(self) -> Property:
        """A property, or a path to one: `name`, `c/name`, `primarycontactid/createdby/fullname`."""
        segments = [self.identifier("a property name")]
        while self.peek().kind == "/" and not (self.peek(1).text in _LAMBDAS and self.peek(2).kind == "("):
            self.index += 1
            segments.append(self.identifier("a property name after '/'"))
        variable = segments[0] if segments[0] in self.variables else None
        if variable is not None:
            segments = segments[1:]
            if not segments:
                raise syntax_error(
                    self.peek().position, self.text, f"Name a property of {variable}, as in {variable}/name."
                )
        elif self.variables:
            raise bad_request(
                f"Inside a lambda expression, name the related row's properties through its variable, as in "
                f"{self.variables[-1]}/{segments[-1]}; '{quoted('/'.join(segments))}' names no variable."
            )
        return Property(segments[-1], variable, tuple(segments[:-1]))

    def identifier(self, expected: str) -> str:
        token = self.peek()
        if not token.is_identifier:
            raise syntax_error(token.position, self.text, f"Expected {expected}, found {token.shown}.")
        self.index += 1
        return token.text

    def lambda_expression(self, depth: int) -> Expression:
        """`collection/any(v: predicate)`, `collection/all(v: predicate)` or `collection/any()`."""
        navigation = self.member()
        self.take("/", "'/'")
        operator = _LAMBDAS[self.take("name", "any or all").text]
        self.take("(", "'('")
        if operator == "any" and self.peek().kind == ")":
            self.index += 1
            return Lambda(operator, navigation)
        variable = self.identifier("a lambda variable, as in any(c: c/name eq 'x')")
        if variable in self.variables:
            raise bad_request(f"The range variable '{variable}' has already been declared.")
        self.take(":", "':' after the lambda variable")
        self.variables.append(variable)
        predicate = self.disjunction(depth + 1)
        self.variables.pop()
        self.take(")", "')'")
        return Lambda(operator, navigation, variable, predicate)

    def operand(self) -> Property | Value:
        token = self.peek()
        if token.is_literal:
            self.index += 1
            return literal_value(token, self.text)
        if token.is_identifier:
            return self.member()
        raise syntax_error(token.position, self.text, f"Expected a property name or a value, found {token.shown}.")

    def comparison(self) -> Expression:
        start = self.peek()
        left = self.operand()
        operator_token = self.peek()
        operator = _COMPARISONS.get(operator_token.text) if operator_token.kind == "name" else None
        if operator is None:
            raise syntax_error(
                operator_token.position, self.text, f"Expected eq, ne, gt, ge, lt or le, found {operator_token.shown}."
            )
        self.index += 1
        right = self.operand()
        if not isinstance(left, Property) and isinstance(right, Property):
            left, right, operator = right, left, _MIRRORED[operator]
        if not isinstance(left, Property):
            raise syntax_error(start.position, self.text, "Compare a property with a value, as in name eq 'Contoso'.")
        if isinstance(right, Property):
            if left.path or right.path or left.alias != right.alias:
                raise bad_request(
                    "A column comparison compares two columns of the same row, as in firstname eq lastname; "
                    "columns of related rows can't be compared."
                )
            return ColumnComparison(operator, left, right)
        return Comparison(operator, left, right)

    def function(self, depth: int) -> Expression:
        name = self.take("name", "a function name")
        self.take("(", "'('")
        if name.text in _TEXT_FUNCTIONS:
            prop = self.member()
            self.take(",", "','")
            value = self.peek()
            if value.kind != "string":
                raise bad_request(f"The function '{name.text}' needs a string value, as in {name.text}(name,'text').")
            self.index += 1
            self.take(")", "')'")
            return TextMatch(_TEXT_FUNCTIONS[name.text], prop, unquote(value.text))
        if name.text.startswith(FUNCTION_NAMESPACE):
            return self.query_function(name.text.removeprefix(FUNCTION_NAMESPACE))
        if name.text.lower() in _ODATA_FUNCTIONS:
            raise not_implemented(f"The '{name.text}' function isn't supported in $filter by the Dataverse Web API.")
        raise bad_request(
            f"An unknown function with name '{quoted(name.text)}' was found. This may also be a function import "
            "or a key lookup on a navigation property, which is not allowed."
        )

    def query_function(self, function: str) -> Expression:
        """`Microsoft.Dynamics.CRM.<function>(PropertyName='name',PropertyValue=...)`, parameters in any order."""
        arguments: dict[str, Value | tuple[Value, ...]] = {}
        while self.peek().kind != ")":
            if arguments:
                self.take(",", "','")
            parameter = self.take("name", "a parameter such as PropertyName")
            if parameter.text not in _PARAMETERS or parameter.text in arguments:
                raise bad_request(
                    f"Unexpected or repeated parameter {parameter.shown} of {FUNCTION_NAMESPACE}{function}; "
                    f"its parameters are PropertyName and, for some functions, PropertyValue or PropertyValues."
                )
            self.take("=", "'='")
            arguments[parameter.text] = self.collection() if self.peek().kind == "[" else self.value()
        self.index += 1
        name = arguments.pop("PropertyName", None)
        if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
            shown = "no PropertyName" if name is None else f"'{quoted(str(name))}'"
            raise bad_request(
                f"{FUNCTION_NAMESPACE}{function} needs PropertyName, the logical name of a column in quotes, as in "
                f"PropertyName='createdon'; found {shown}."
            )
        return QueryFunction(function, name, tuple(arguments.items()))

    def value(self) -> Value:
        token = self.peek()
        if not token.is_literal:
            raise syntax_error(token.position, self.text, f"Expected a value, found {token.shown}.")
        self.index += 1
        return literal_value(token, self.text)

    def collection(self) -> tuple[Value, ...]:
        """`['a','b']` or `["a","b"]`: the values stay text, as a `Collection(Edm.String)` parameter takes."""
        self.take("[", "'['")
        values: list[Value] = []
        while self.peek().kind != "]":
            if values and self.peek().kind != ",":
                raise bad_request(
                    "Invalid JSON. A comma character ',' was expected in scope 'Array'. Every two elements in an "
                    "array and properties of an object must be separated by commas."
                )
            if values:
                self.index += 1
            token = self.peek()
            if token.kind not in ("string", "json"):
                raise syntax_error(token.position, self.text, f"Expected a value in quotes, found {token.shown}.")
            self.index += 1
            values.append(literal_value(token, self.text))
        self.index += 1
        return tuple(values)


def parse_filter(text: str, aliases: Mapping[str, str] | None = None) -> Expression:
    """The expression tree of a `$filter` value; `aliases` are the request's `@name=value` parameters."""
    return _FilterParser(text, aliases).parse()
