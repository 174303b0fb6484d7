"""Paging and preferences: what the `Prefer` header asks for, and the `$skiptoken` paging cookie.

As "Page results using OData" shows them: `Prefer: odata.maxpagesize` sets the page size (up to 5,000) and is
echoed in `Preference-Applied`; the `@odata.nextLink` is the same query with a `$skiptoken` holding a paging
cookie that names the next page number and the first and last rows of the page returned, URL-encoded twice.
`Prefer: odata.track-changes` asks for a delta link (`_changes.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, quote

from starlette.requests import Request

from ._errors import bad_request
from ._records import Annotations


@dataclass(frozen=True)
class Preferences:
    """What the `Prefer` header asks for."""

    max_page_size: int | None
    annotations: Annotations
    representation: bool
    track_changes: bool = False

    @classmethod
    def parse(cls, header: str) -> Preferences:
        size = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", header)
        return cls(
            max_page_size=int(size.group(1)) if size else None,
            annotations=Annotations.from_prefer(header),
            representation="return=representation" in header,
            track_changes="odata.track-changes" in header,
        )

    def applied(self, *, page_size_used: bool, changes_tracked: bool = False) -> str:
        parts = []
        if self.track_changes and changes_tracked:
            parts.append("odata.track-changes")
        if self.max_page_size is not None and page_size_used:
            parts.append(f"odata.maxpagesize={self.max_page_size}")
        if self.annotations.requested:
            parts.append(f'odata.include-annotations="{self.annotations.requested}"')
        if self.representation:
            parts.append("return=representation")
        return ",".join(parts)


_PAGE_NUMBER: Final = re.compile(r'pagenumber="(\d+)"')


def page_from_skiptoken(skiptoken: str | None) -> int:
    if skiptoken is None:
        return 1
    match = _PAGE_NUMBER.search(skiptoken)
    if not match or int(match.group(1)) < 1:
        raise bad_request("The $skiptoken is not valid: pass back the @odata.nextLink exactly as returned.")
    return int(match.group(1))


def next_link(request: Request, api_url: str, primary_id: str, page: int, first: Any, last: Any) -> str:
    """The `@odata.nextLink`: the same query with a paging cookie naming the next page and this page's rows."""
    bounds = f'last="{{{str(last).upper()}}}" first="{{{str(first).upper()}}}"'
    inner = f'<cookie page="{page - 1}"><{primary_id} {bounds} /></cookie>'
    cookie = f'<cookie pagenumber="{page}" pagingcookie="{quote(quote(inner, safe=""), safe="")}" istracking="False" />'
    options = [
        (name, value) for name, value in parse_qsl(request.url.query, keep_blank_values=True) if name != "$skiptoken"
    ]
    options.append(("$skiptoken", cookie))
    query = "&".join(f"{quote(name, safe='$')}={quote(value, safe='')}" for name, value in options)
    path = request.scope["raw_path"].decode("latin-1").split("/api/data/", 1)[1].split("/", 1)[1]
    return f"{api_url}/{path}?{query}"
