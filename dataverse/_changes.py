"""Change tracking: the rows of a table created, updated and deleted since a delta token the service gave.

Following "Use change tracking to synchronize data with external systems"
(learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems):
a read of an entity set with `Prefer: odata.track-changes` answers its rows and, on its last page, an
`@odata.deltaLink` whose `$deltatoken` marks that moment; the same read with that `$deltatoken` answers the rows
created or updated since (new and updated first) and the ids of rows deleted since, each as
`{"@odata.context": ".../$metadata#accounts/$deletedEntity", "id": ..., "reason": "deleted"}`, with a new delta link.
`$filter`, `$orderby`, `$expand` and `$top` are refused there. Only a table whose `ChangeTrackingEnabled` is true is
tracked, and a token older than the organization's `ExpireChangeTrackingInDays` is refused with 0x80044352.

Delta links are not followed as given: the client keeps only the `$deltatoken` (and a next page's `$skiptoken`) and
builds each request itself, as `read_page` does with `@odata.nextLink`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from ._errors import ChangeTrackingOff, DataverseError
from ._metadata import TableSummary
from ._odata import InvalidQuery, identifier
from ._transport import Transport

TRACK_CHANGES: Final = "odata.track-changes"
MAX_PAGE_SIZE: Final = 5000


@dataclass(frozen=True)
class Change:
    """A row created or updated (`row` holds its selected columns), or deleted (`row` is None)."""

    id: str
    row: dict[str, Any] | None


@dataclass(frozen=True)
class ChangePosition:
    """Where the next page of one change set starts: the service's paging token and the delta token it pages."""

    skiptoken: str
    deltatoken: str | None

    def to_json(self) -> list[str | None]:
        return [self.skiptoken, self.deltatoken]

    @classmethod
    def from_json(cls, value: Any) -> ChangePosition:
        match value:
            case [str() as skiptoken, str() | None as deltatoken]:
                return cls(skiptoken, deltatoken)
        raise InvalidQuery("That paging position is not one this client made.")


@dataclass(frozen=True)
class ChangePage:
    """One page of changes; `next` names the following page, and the last page carries the new `deltatoken`."""

    changes: list[Change]
    next: ChangePosition | None
    deltatoken: str | None
    served_at: datetime | None  # the service's clock when it answered (its Date header)


async def read_changes(
    transport: Transport,
    table: TableSummary,
    select: Sequence[str],
    *,
    deltatoken: str | None = None,
    position: ChangePosition | None = None,
    page_size: int = MAX_PAGE_SIZE,
    annotations: str | None = None,
) -> ChangePage:
    """One page of `table`'s changes since `deltatoken` (None: every row, as the first read of a feed)."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise DataverseError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}.")
    params = {"$select": ",".join(identifier(column) for column in select)} if select else {}
    token = position.deltatoken if position is not None else deltatoken
    if token is not None:
        params["$deltatoken"] = token
    if position is not None:
        params["$skiptoken"] = position.skiptoken
    prefer = [TRACK_CHANGES, f"odata.maxpagesize={page_size}", *([annotations] if annotations else [])]
    entity_set = identifier(table.entity_set_name, "entity set")
    # A token the service no longer keeps is refused with ChangeTokenExpired (see `_errors.py`).
    outcome = await transport.send(
        "GET", transport.url(entity_set), repeatability="safe", params=params, headers={"Prefer": ",".join(prefer)}
    )
    body = outcome.response.json()
    changes = [_change(item, table.primary_id) for item in body.get("value") or () if isinstance(item, dict)]
    following = None
    next_link = body.get("@odata.nextLink")
    if next_link:
        query = _link_query(transport, str(next_link), "$skiptoken")
        following = ChangePosition(query["$skiptoken"], query.get("$deltatoken", token))
    new_token = None
    delta_link = body.get("@odata.deltaLink")
    if delta_link and following is None:
        new_token = _link_query(transport, str(delta_link), "$deltatoken")["$deltatoken"]
    if following is None and new_token is None:
        # A service that ignores the preference answers a plain read: as good as refusing to track the table.
        raise ChangeTrackingOff(
            f"Dataverse did not track changes of {table.logical_name}: its answer had no delta link.",
            status=outcome.response.status_code,
        )
    return ChangePage(changes, following, new_token, parse_http_date(outcome.response.headers.get("date")))


async def current_token(transport: Transport, table: TableSummary) -> tuple[str, datetime | None]:
    """A delta token for now, and the service's clock then: the first read of a feed, its rows' ids discarded."""
    position: ChangePosition | None = None
    while True:
        page = await read_changes(transport, table, [table.primary_id], position=position)
        if page.deltatoken is not None:
            return page.deltatoken, page.served_at
        position = page.next


def parse_http_date(text: str | None) -> datetime | None:
    """An HTTP `Date` header's time, or None when there is none or it is not a date."""
    try:
        return parsedate_to_datetime(text) if text else None
    except (TypeError, ValueError):
        return None


def _change(item: dict[str, Any], primary_id: str) -> Change:
    context = str(item.get("@odata.context") or "")
    if context.endswith("/$deletedEntity") or "@removed" in item:  # the OData 4.0 and 4.01 forms
        return Change(_deleted_id(item), None)
    return Change(str(item.get(primary_id) or ""), item)


def _deleted_id(item: dict[str, Any]) -> str:
    """A deleted row's id: a GUID as Dataverse writes it, or an entity id such as `accounts(<guid>)`."""
    text = str(item.get("id") or item.get("@id") or "")
    if text.endswith(")") and "(" in text:
        text = text[text.rindex("(") + 1 : -1]
    return text


def _link_query(transport: Transport, link: str, required: str) -> dict[str, str]:
    """The query options of a link the service returned, which must be this environment's and carry `required`."""
    if not transport.is_own_url(link):
        raise DataverseError("The service returned a link outside this environment; stopping.")
    options = {name: values[0] for name, values in parse_qs(urlsplit(link).query, keep_blank_values=True).items()}
    if required not in options:
        raise DataverseError(f"The service returned a link without {required}; stopping.")
    return options
