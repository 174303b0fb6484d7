"""A Dataverse search term in the simple query syntax, and what it finds in a row's text: match, score, highlights.

"Dataverse Search query" lists the syntax: `+` AND, `|` OR, `-` NOT, parentheses for precedence, a trailing `*`
wildcard (`Alp*` finds "alpine"), a quoted phrase, and `\\` before an operator character to search for it. Terms
written side by side combine as the search mode says: any of them (`searchmode` `any`, the default) or all.
A term excluded by a leading `-`, written side by side with others, excludes its rows from the whole group it
stands in (`contoso -ltd`: rows with "contoso" and without "ltd"; `a+-b` is a and not b). `*` alone finds every
row; a query with no word to look for (`?`) finds none.

Text is split into words of letters and digits and compared ignoring case, so `info@contoso.example` is found by
`contoso` and a term of several words (`A-1001`, `\\+1\\(425\\)`) is looked for as a phrase. The score is the
sandbox's own: each word found counts, more in a short value than in a long one and twice in the primary name;
highlights wrap each word found in `{crmhit}`...`{/crmhit}`, as the page's example shows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

SearchMode = Literal["any", "all"]

HIT_START: Final = "{crmhit}"
HIT_END: Final = "{/crmhit}"
PRIMARY_NAME_BOOST: Final = 2.0
_WORD: Final = re.compile(r"\w+")
_SPECIAL: Final = frozenset('+|()"')  # end a bare term; `-` and `*` end it only where the syntax gives them a role

Span = tuple[int, int]


@dataclass(frozen=True)
class Term:
    """Words that must follow one another (one word: a plain term); `prefix`: the last one may go on (`alp*`)."""

    words: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True)
class Negated:
    operand: Node


@dataclass(frozen=True)
class Group:
    """Alternatives, each a conjunction of nodes; a row matching any of the `excluded` nodes is not matched."""

    alternatives: tuple[tuple[Node, ...], ...]
    excluded: tuple[Node, ...] = ()


Node = Term | Negated | Group


@dataclass(frozen=True)
class Found:
    """A matched row: its relevance and, per column where a term was found, the value with the hits marked."""

    score: float
    highlights: dict[str, list[str]] = field(default_factory=dict)


MATCH_EVERYTHING: Final = Group(())


def _tokens(text: str) -> Iterator[str | Term]:
    """Operators (`+ | - ( )`) and terms; a term with no letters or digits (`&`, `?`) stands for nothing."""
    index = 0
    starts_item = True  # where a `-` is the NOT operator rather than part of a word (`e-mail`)
    while index < len(text):
        character = text[index]
        if character.isspace():
            index += 1
            starts_item = True
            continue
        if character in "+|()" or (character == "-" and starts_item):
            yield character
            index += 1
            starts_item = True
            continue
        if character == '"':
            end = text.find('"', index + 1)
            end = len(text) if end == -1 else end
            words = tuple(_WORD.findall(text[index + 1 : end].casefold()))
            index = end + 1
            if words:
                yield Term(words)
            starts_item = False
            continue
        raw = []
        while index < len(text) and not text[index].isspace() and text[index] not in _SPECIAL:
            if text[index] == "\\" and index + 1 < len(text):
                index += 1
                raw.append(" " if text[index] == "*" else text[index])  # an escaped `*` is no wildcard
            else:
                raw.append(text[index])
            index += 1
        written = "".join(raw)
        words = tuple(_WORD.findall(written.casefold()))
        if words:
            yield Term(words, prefix=written.endswith("*"))
        starts_item = False


class _Parser:
    def __init__(self, text: str, mode: SearchMode) -> None:
        self.symbols = list(_tokens(text))
        self.position = 0
        self.joins_by_and = mode == "all"

    def next(self) -> str | Term | None:
        if self.position == len(self.symbols):
            return None
        symbol = self.symbols[self.position]
        self.position += 1
        return symbol

    def group(self) -> Group:
        alternatives: list[list[Node]] = [[]]
        excluded: list[Node] = []
        operator: str | None = None
        while (symbol := self.next()) not in (None, ")"):
            if symbol in ("|", "+"):
                operator = symbol
                continue
            negated = False
            while symbol == "-":
                negated, symbol = not negated, self.next()
            node: Node
            if symbol == "(":
                node = self.group()
            elif isinstance(symbol, Term):
                node = symbol
            else:  # an operator with nothing after it
                break
            if negated and operator is None:
                excluded.append(node)
                continue
            node = Negated(node) if negated else node
            joins_by_and = operator == "+" or (operator is None and self.joins_by_and)
            if joins_by_and or not alternatives[-1]:
                alternatives[-1].append(node)
            else:
                alternatives.append([node])
            operator = None
        return Group(tuple(tuple(part) for part in alternatives if part), tuple(excluded))


def parse_search(text: str, mode: SearchMode) -> Group:
    """The query `text` asks for; `*` alone is `MATCH_EVERYTHING`."""
    if text.strip() == "*":
        return MATCH_EVERYTHING
    return _Parser(text, mode).group()


def _spans(term: Term, words: list[tuple[str, Span]]) -> list[Span]:
    """Where `term` occurs among a value's words: the span of each word of each occurrence."""
    found: list[Span] = []
    size = len(term.words)
    for start in range(len(words) - size + 1):
        candidate = [word for word, _ in words[start : start + size]]
        *whole, last = term.words
        if candidate[:-1] == whole and (candidate[-1] == last or (term.prefix and candidate[-1].startswith(last))):
            found.extend(span for _, span in words[start : start + size])
    return found


class _Row:
    """One row's searched values, split into words once, with the hits of every term looked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.words = {
            column: [(match.group().casefold(), match.span()) for match in _WORD.finditer(text)]
            for column, text in values.items()
        }
        self.hits: dict[Term, dict[str, list[Span]]] = {}

    def hits_of(self, term: Term) -> dict[str, list[Span]]:
        if term not in self.hits:
            found = {column: _spans(term, words) for column, words in self.words.items()}
            self.hits[term] = {column: spans for column, spans in found.items() if spans}
        return self.hits[term]

    def meets(self, node: Node) -> bool:
        match node:
            case Term():
                return bool(self.hits_of(node))
            case Negated(operand):
                return not self.meets(operand)
            case Group(alternatives, excluded):
                # Only exclusions (`-ltd`): every row without them; no term at all (`?`): no row.
                chosen = any(all(self.meets(part) for part in parts) for parts in alternatives) or (
                    not alternatives and bool(excluded)
                )
                return chosen and not any(self.meets(part) for part in excluded)
        raise AssertionError(f"unknown search node {node!r}")


def _wanted_terms(node: Node) -> Iterator[Term]:
    """The terms whose hits make a row relevant: all but those negated or excluded."""
    match node:
        case Term():
            yield node
        case Group(alternatives, _):
            for parts in alternatives:
                for part in parts:
                    yield from _wanted_terms(part)


def _marked(text: str, spans: list[Span]) -> str:
    pieces, end = [], 0
    for start, stop in sorted(set(spans)):
        pieces += [text[end:start], HIT_START, text[start:stop], HIT_END]
        end = stop
    return "".join([*pieces, text[end:]])


def find(query: Group, values: Mapping[str, str], primary_name: str) -> Found | None:
    """How a row whose searched columns hold `values` meets `query`; None when it does not."""
    if query is MATCH_EVERYTHING:
        return Found(1.0)
    row = _Row(values)
    if not row.meets(query):
        return None
    score = 0.0
    spans: dict[str, list[Span]] = {}
    for term in set(_wanted_terms(query)):
        for column, found in row.hits_of(term).items():
            boost = PRIMARY_NAME_BOOST if column == primary_name else 1.0
            score += boost * len(found) / len(term.words) / math.sqrt(len(row.words[column]))
            spans.setdefault(column, []).extend(found)
    highlights = {column: [_marked(values[column], found)] for column, found in spans.items()}
    return Found(round(score, 6), highlights)
