"""FetchXML paging on the client side: setting `page`, `count` and `paging-cookie` on a caller's query.

The Web API returns the next page's cookie inside the `@Microsoft.Dynamics.CRM.fetchxmlpagingcookie`
annotation, as the `pagingcookie` attribute of a small XML element, URL-encoded twice; it goes back as the
`paging-cookie` attribute of `<fetch>`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from urllib.parse import unquote

from ._odata import InvalidQuery

_DOCTYPE = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)


def parse_fetch(fetchxml: str) -> ElementTree.Element:
    """The `<fetch>` element of a query; refuses DTDs (no entity expansion from caller input)."""
    if _DOCTYPE.search(fetchxml):
        raise InvalidQuery("FetchXML must not contain a DOCTYPE or entity declarations.")
    try:
        root = ElementTree.fromstring(fetchxml)  # noqa: S314 - DTDs refused above
    except ElementTree.ParseError as error:
        raise InvalidQuery(f"The FetchXML is not well-formed XML: {error}.") from None
    if root.tag != "fetch" or root.find("entity") is None:
        raise InvalidQuery("FetchXML must be a <fetch> element containing one <entity name='...'>.")
    return root


def fetch_entity(fetchxml: str) -> str:
    """The logical name of the table a FetchXML query reads."""
    entity = parse_fetch(fetchxml).find("entity")
    assert entity is not None
    name = entity.get("name")
    if not name:
        raise InvalidQuery("The <entity> element of the FetchXML needs a name attribute.")
    return name


def page_fetchxml(fetchxml: str, page: int, count: int, cookie: str | None) -> str:
    """The query with paging attributes for `page`; a caller's `top` or own `count` is kept."""
    root = parse_fetch(fetchxml)
    if root.get("top") is None:
        root.set("count", root.get("count") or str(count))
        root.set("page", str(page))
        if cookie:
            root.set("paging-cookie", cookie)
    return ElementTree.tostring(root, encoding="unicode")


def paging_cookie_from_annotation(annotation: str) -> str | None:
    """The paging cookie to send back, from the `fetchxmlpagingcookie` annotation's value."""
    try:
        element = ElementTree.fromstring(annotation)  # noqa: S314 - the service's own small element
    except ElementTree.ParseError:
        return None
    encoded = element.get("pagingcookie")
    return unquote(unquote(encoded)) if encoded else None
