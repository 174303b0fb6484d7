"""Dataverse search: relevance search across tables through the search 2.0 endpoint.

The endpoint is not OData: `POST <environment>/api/search/v2.0/query` takes JSON whose `entities`, `facets` and
`orderby` members are themselves JSON written into strings, and answers `{"response": "<JSON in a string>"}`
("Dataverse Search query", learn.microsoft.com/power-apps/developer/data-platform/search/query).
`GET <environment>/api/search/v2.0/status` says which tables and columns are indexed ("Dataverse Search statistics
and status"). An environment where search is off answers 400 with code 0x80048d0b ("Search for Dataverse
records": error when search not enabled).

The service spells the unescaped response's members in more than one case (`Value` in the reference tables,
`value` in the status answer), so members are read without regard to case.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ._errors import DataverseError, SearchDisabled
from ._transport import Transport

MAX_SEARCH_CHARS: Final = 100  # "has a 100 character limit"
MAX_TOP: Final = 100  # "You can use top to raise it as high as 100"


@dataclass(frozen=True)
class SearchHit:
    """One matching row: its table, id and score, the columns the service returned, and the highlighted matches
    (`{crmhit}` and `{/crmhit}` around each matched term, as the service writes them)."""

    table: str
    id: str
    score: float | None
    attributes: Mapping[str, Any]
    highlights: Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    count: int | None  # the total when asked for; the service writes -1 when it was not
    facets: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IndexedTable:
    """A table the environment's search index holds, and its indexed columns."""

    name: str
    primary_name: str | None
    columns: tuple[str, ...]


def search_transport(web_api: Transport, environment_url: str) -> Transport:
    """A transport for the search endpoint, beside the Web API's: same environment, token, retries and limits."""
    transport = Transport(
        web_api.http,
        f"{environment_url.rstrip('/')}/api/search/v2.0",
        web_api.tokens,
        retry=web_api.retry,
        max_concurrency=web_api.max_concurrency,
        user_agent=web_api.user_agent,
        read_only=web_api.read_only,
    )
    transport.limiter = web_api.limiter  # one concurrency cap per environment and caller
    return transport


async def search(
    transport: Transport,
    text: str,
    *,
    tables: Sequence[str] = (),
    filter: str | None = None,
    top: int | None = None,
    count: bool = False,
) -> SearchResult:
    """Rows matching `text`, best first, in `tables` (every indexed table when empty)."""
    if not text.strip():
        raise DataverseError("Give some text to search for.", hint="For example search='Fabrikam'.")
    if len(text) > MAX_SEARCH_CHARS:
        raise DataverseError(f"The search text is {len(text)} characters long; Dataverse search takes up to 100.")
    if top is not None and not 1 <= top <= MAX_TOP:
        raise DataverseError(f"top must be between 1 and {MAX_TOP}, not {top}.")
    body: dict[str, Any] = {"search": text}
    if tables:
        body["entities"] = json.dumps([{"name": name} for name in tables], separators=(",", ":"))
    if filter:
        body["filter"] = filter
    if top is not None:
        body["top"] = top
    if count:
        body["count"] = True
    answer = await _call(transport, "POST", "query", body)
    error = _member(answer, "error")
    if isinstance(error, dict) and (_member(error, "message") or _member(error, "code")):
        raise DataverseError(f"Dataverse search failed: {_member(error, 'message') or _member(error, 'code')}")
    hits = [_hit(item) for item in _member(answer, "value") or () if isinstance(item, dict)]
    total = _member(answer, "count")
    return SearchResult(
        hits=hits,
        count=int(total) if isinstance(total, int) and total >= 0 else None,
        facets=_member(answer, "facets") or {},
    )


async def indexed_tables(transport: Transport) -> list[IndexedTable]:
    """The tables (and their columns) the environment's search index holds; SearchDisabled when search is off."""
    answer = await _call(transport, "GET", "status", None)
    status = _member(answer, "value") or answer
    state = _member(status, "status")
    if isinstance(state, str) and state.lower() != "provisioned":
        # The status operation answers where query refuses: "notprovisioned", "provisioninginprogress".
        raise SearchDisabled(f"Dataverse search is not ready for this environment (its status is {state}).", status=400)
    tables = []
    for item in _member(status, "entitystatusresults") or ():
        name = _member(item, "entitylogicalname") if isinstance(item, dict) else None
        if isinstance(name, str):
            fields = _member(item, "searchableindexedfieldinfomap")
            tables.append(
                IndexedTable(
                    name=name.lower(),
                    primary_name=_member(item, "primarynamefield"),
                    columns=tuple(fields) if isinstance(fields, dict) else (),
                )
            )
    return tables


async def _call(transport: Transport, method: str, operation: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
    """The unescaped JSON of one search operation's `response`."""
    # Search turned off for the environment is refused with SearchDisabled (see `_errors.py`).
    outcome = await transport.send(method, transport.url(operation), repeatability="safe", json=body, reads=True)
    wrapped = outcome.response.json()
    response = _member(wrapped, "response") if isinstance(wrapped, dict) else None
    if isinstance(response, str):
        try:
            response = json.loads(response)
        except ValueError:
            raise DataverseError("Dataverse search answered with a response that is not JSON.") from None
    if not isinstance(response, dict):
        raise DataverseError("Dataverse search answered without a response.")
    return response


def _member(body: Any, name: str) -> Any:
    """`body[name]` whatever the case the service spelled `name` in."""
    if not isinstance(body, dict):
        return None
    if name in body:
        return body[name]
    lowered = name.lower()
    return next((value for key, value in body.items() if key.lower() == lowered), None)


def _hit(item: dict[str, Any]) -> SearchHit:
    score = _member(item, "score")
    highlights = _member(item, "highlights")
    attributes = _member(item, "attributes")
    return SearchHit(
        table=str(_member(item, "entityname") or ""),
        id=str(_member(item, "id") or ""),
        score=float(score) if isinstance(score, int | float) else None,
        attributes=attributes if isinstance(attributes, dict) else {},
        highlights={
            str(column): [str(text) for text in texts]
            for column, texts in (highlights.items() if isinstance(highlights, dict) else ())
            if isinstance(texts, list)
        },
    )
