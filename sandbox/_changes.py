"""Change tracking: `Prefer: odata.track-changes`, delta links and `$deltatoken`, as "Use change tracking to
synchronize data with external systems" shows them, paged as OData 4.0 pages a delta response.

A read of an entity set with `Prefer: odata.track-changes` answers every row and, on its last page, an
`@odata.deltaLink`: the same `$select` with a `$deltatoken` of the service's shape, `<row version>!<MM/dd/yyyy
HH:mm:ss>` (the store's row version when the read began and the environment's clock then, in UTC). Following the
link answers the rows written since that version (new or updated, oldest first, every selected column), then the
rows deleted since (`$deletedEntity` entries, from the store's tombstones, so a link outlives a restart), and a
new delta link. A token older than the organization's `ExpireChangeTrackingInDays` is ExpiredVersionStamp.

`Prefer: odata.maxpagesize` (up to 5,000) pages the answer: each `@odata.nextLink` carries a paging cookie
marked `istracking="True"` holding the token the read ends at and the last version returned, so a next link
needs no `Prefer` (OData 4.0: the service ignores `odata.track-changes` on a next link) and a row written while
a client pages is neither skipped nor repeated: it comes in the next delta. The delta link is on the last page
only. The caller must read every row of the table, as the page requires organization-level read access.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import parse_qsl, quote, unquote

from ._catalog import Column, JsonObject, Table
from ._environment import Environment
from ._errors import PRIVILEGE_DENIED, WebApiError, bad_request
from ._expand import selected_columns, with_currency
from ._expression import Comparison, Expression, Property, conjunction
from ._odata import parse_select
from ._paging import Preferences
from ._query import RowQuery, count_rows, select_rows
from ._records import NameLookup, render_row
from ._security import Caller
from ._store import StoredRow

NOT_ENABLED: Final = "0x80072491"  # ChangeTrackingNotEnabledForEntity
EXPIRED_VERSION_STAMP: Final = "0x80044352"  # ExpiredVersionStamp
MAX_PAGE_SIZE: Final = 5000  # "Dataverse returns a collection of 5,000 records"
# The page names the first four; the others have no meaning for a change read either, and are refused alike.
UNSUPPORTED_OPTIONS: Final = ("$filter", "$orderby", "$expand", "$top", "$count", "$apply", "fetchXml")
_TIME_FORMAT: Final = "%m/%d/%Y %H:%M:%S"
_TOKEN: Final = re.compile(r"(\d+)!(\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2})")
_TRACKING: Final = 'istracking="True"'
_COOKIE: Final = re.compile(r'<cookie pagenumber="(\d+)" pagingcookie="([^"]*)" istracking="True" />')
_POSITION: Final = re.compile(r'<changes upto="([^"]*)" after="(\d+)" deleted="([01])" />')
_VERSION: Final = Property("versionnumber")


@dataclass(frozen=True)
class DeltaToken:
    """A point in the organization's history: the last row version then, and when (`919042!08/22/2017 08:10:44`)."""

    version: int
    issued: datetime

    def __str__(self) -> str:
        return f"{self.version}!{self.issued.astimezone(UTC).strftime(_TIME_FORMAT)}"

    @classmethod
    def parse(cls, text: str) -> DeltaToken:
        match = _TOKEN.fullmatch(text.strip())
        try:
            issued = datetime.strptime(match.group(2), _TIME_FORMAT) if match else None
        except ValueError:  # a shape the pattern allows and no calendar does, such as month 13
            issued = None
        if match is None or issued is None:
            raise bad_request("The $deltatoken is not valid: pass back the @odata.deltaLink exactly as returned.")
        return cls(int(match.group(1)), issued.replace(tzinfo=UTC))


@dataclass(frozen=True)
class _Position:
    """Where a paged change read stands: the token it ends at, the last version returned and in which part."""

    page: int
    upto: DeltaToken
    after: int
    deleted: bool

    def skiptoken(self) -> str:
        inner = f'<changes upto="{self.upto}" after="{self.after}" deleted="{int(self.deleted)}" />'
        return f'<cookie pagenumber="{self.page}" pagingcookie="{quote(inner, safe="")}" {_TRACKING} />'

    @classmethod
    def parse(cls, skiptoken: str) -> _Position:
        cookie = _COOKIE.fullmatch(skiptoken.strip())
        inner = _POSITION.fullmatch(unquote(cookie.group(2))) if cookie else None
        if cookie is None or inner is None:
            raise bad_request("The $skiptoken is not valid: pass back the @odata.nextLink exactly as returned.")
        upto = DeltaToken.parse(inner.group(1))
        return cls(int(cookie.group(1)), upto, int(inner.group(2)), inner.group(3) == "1")


def asks_for_changes(query: str, preferences: Preferences) -> bool:
    """Whether a read of an entity set is a change read: asked for, a delta link, or a next link of either."""
    options = dict(parse_qsl(query, keep_blank_values=True))
    if "$skiptoken" in options:  # a next link: OData 4.0 has the service ignore the preference on one
        return _TRACKING in options["$skiptoken"]
    return "$deltatoken" in options or preferences.track_changes


def read_changes(
    environment: Environment,
    table: Table,
    caller: Caller,
    options: Mapping[str, str],
    preferences: Preferences,
    names: NameLookup,
) -> tuple[JsonObject, str]:
    """One page of a change read: its body and its `Preference-Applied` value ('' for none)."""
    since = _since(environment, table, caller, options)
    columns = selected_columns(table, parse_select(options["$select"]) if "$select" in options else None)
    if "$skiptoken" in options:
        position = _Position.parse(options["$skiptoken"])
    else:
        upto = DeltaToken(environment.store.version(), environment.clock())
        position = _Position(1, upto, since.version if since else 0, deleted=False)
    page_size = min(preferences.max_page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    after, in_deletions, more = position.after, position.deleted, False
    rows: list[StoredRow] = []
    if not in_deletions:
        rows = _written(environment, table, caller, after, position.upto.version, page_size + 1)
        more = len(rows) > page_size
        rows = rows[:page_size]
        after = int(rows[-1]["versionnumber"] or 0) if rows else after
        if not more and since is not None:  # "new or updated records first ... followed by deleted records"
            in_deletions, after = True, since.version
    deleted: list[tuple[str, int]] = []
    if in_deletions and not more:
        room = page_size - len(rows)
        deleted = environment.store.deletions(table, after, position.upto.version, room + 1)
        more = len(deleted) > room
        deleted = deleted[:room]
        after = deleted[-1][1] if deleted else after
    api_url = environment.api_url
    body: JsonObject = {"@odata.context": _context(api_url, table, columns) + ("/$delta" if since else "")}
    link_options = [("$select", options["$select"])] if "$select" in options else []
    if not more:
        body["@odata.deltaLink"] = _link(api_url, table, [*link_options, ("$deltatoken", str(position.upto))])
    deleted_context = f"{api_url}/$metadata#{table.entity_set_name}/$deletedEntity"
    body["value"] = [
        render_row(table, row, with_currency(table, columns), preferences.annotations, names) for row in rows
    ] + [{"@odata.context": deleted_context, "id": row_id, "reason": "deleted"} for row_id, _ in deleted]
    if more:
        if since is not None:
            link_options.append(("$deltatoken", str(since)))
        following = _Position(position.page + 1, position.upto, after, in_deletions)
        body["@odata.nextLink"] = _link(api_url, table, [*link_options, ("$skiptoken", following.skiptoken())])
    # OData 4.0: Preference-Applied names odata.track-changes "in the first page of the response".
    return body, preferences.applied(page_size_used=True, changes_tracked="$skiptoken" not in options)


def count_changes(environment: Environment, table: Table, caller: Caller, options: Mapping[str, str]) -> int:
    """`<entity set>/$count?$deltatoken=...`: how many rows were written or deleted since the token."""
    since = _since(environment, table, caller, options)
    assert since is not None  # the Web API counts changes only with a $deltatoken
    upto = environment.store.version()
    written = RowQuery(table, filter=_between(since.version, upto))
    return count_rows(environment.store, written, caller) + len(environment.store.deletions(table, since.version, upto))


def _since(environment: Environment, table: Table, caller: Caller, options: Mapping[str, str]) -> DeltaToken | None:
    """The token a change read starts from (None: from the beginning), once the read is allowed."""
    if not table.metadata.get("ChangeTrackingEnabled"):
        raise WebApiError(400, NOT_ENABLED, f"Entity {table.logical_name} isn't enabled for change tracking.")
    for name in UNSUPPORTED_OPTIONS:
        if name in options:
            raise bad_request(f'The "{name}" query parameter isn\'t supported when Change Tracking is enabled.')
    limited, _ = caller.visibility(table, "row")  # a condition: the caller reads only some rows
    if limited:
        raise WebApiError(
            403,
            PRIVILEGE_DENIED,
            f"Principal user (Id={caller.system_user_id}) is missing prvRead{table.display_name.replace(' ', '')} "
            f"privilege at organization depth on OTC={table.object_type_code} for entity '{table.logical_name}': "
            "retrieving changes needs organization-level read access.",
        )
    if "$deltatoken" not in options:
        return None
    token = DeltaToken.parse(options["$deltatoken"])
    if environment.clock() - token.issued > timedelta(days=environment.expire_change_tracking_in_days):
        raise WebApiError(
            400,
            EXPIRED_VERSION_STAMP,
            "Version stamp associated with the client has expired. Please perform a full sync.",
        )
    return token


def _between(after: int, upto: int) -> Expression | None:
    return conjunction([Comparison("gt", _VERSION, after), Comparison("le", _VERSION, upto)])


def _written(
    environment: Environment, table: Table, caller: Caller, after: int, upto: int, limit: int
) -> list[StoredRow]:
    """Rows created or updated with a version in (`after`, `upto`], oldest first."""
    query = RowQuery(table, filter=_between(after, upto), orderby=[(_VERSION, False)], limit=limit)
    return select_rows(environment.store, query, caller)


def _context(api_url: str, table: Table, columns: list[Column] | None) -> str:
    selection = f"({','.join(column.property_name for column in columns)})" if columns else ""
    return f"{api_url}/$metadata#{table.entity_set_name}{selection}"


def _link(api_url: str, table: Table, options: list[tuple[str, str]]) -> str:
    """A link to more of the change read: `$select` as given, the tokens percent-encoded as the service does."""
    encoded = [f"{name}={quote(value, safe=',') if name == '$select' else _escape(value)}" for name, value in options]
    return f"{api_url}/{table.entity_set_name}?{'&'.join(encoded)}"


def _escape(value: str) -> str:
    # The page's delta link writes escapes in lower case: `919042%2108%2f22%2f2017%2008%3a10%3a44`.
    return re.sub(r"%[0-9A-F]{2}", lambda escape: escape.group().lower(), quote(value, safe=""))
