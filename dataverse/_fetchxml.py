"""FetchXML queries, parsed once: the tables a query reads are read off the same tree that is sent.

A caller's text is parsed into a `FetchQuery` (no DTD, no entities, no namespaces); its `<entity>` and every
`<link-entity>` name the tables it reads, so a policy checks the parsed tree, never the raw text (a character
reference or an attribute order cannot hide a table). Paging sets `page`, `count` and `paging-cookie` on a copy
of that tree. The Web API returns the next page's cookie inside the `@Microsoft.Dynamics.CRM.fetchxmlpagingcookie`
annotation, as the `pagingcookie` attribute of a small XML element, URL-encoded twice.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from typing import Final
from urllib.parse import unquote

from ._odata import InvalidQuery

_DOCTYPE: Final = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)
TABLE_ELEMENTS: Final = ("entity", "link-entity")
PAGING_ATTRIBUTES: Final = ("page", "paging-cookie")


class FetchQuery:
    """A parsed FetchXML query: the tables it reads, its text, and its text for one page."""

    def __init__(self, root: ElementTree.Element) -> None:
        self._root = root

    @classmethod
    def parse(cls, fetchxml: str) -> FetchQuery:
        """Refuses DTDs (no entity expansion from caller input), namespaces and a missing `<entity name>`."""
        if _DOCTYPE.search(fetchxml):
            raise InvalidQuery("FetchXML must not contain a DOCTYPE or entity declarations.")
        try:
            root = ElementTree.fromstring(fetchxml)  # noqa: S314 - DTDs refused above
        except ElementTree.ParseError as error:
            raise InvalidQuery(f"The FetchXML is not well-formed XML: {error}.") from None
        for element in root.iter():
            if not isinstance(element.tag, str) or "{" in element.tag or any("{" in name for name in element.attrib):
                raise InvalidQuery("FetchXML elements and attributes take no namespace.")
        if root.tag != "fetch" or len(root.findall("entity")) != 1:
            raise InvalidQuery("FetchXML must be a <fetch> element containing one <entity name='...'>.")
        query = cls(root)
        for element in query._table_elements():
            if not (element.get("name") or "").strip():
                raise InvalidQuery(f"Every <{element.tag}> of the FetchXML needs a name attribute.")
        return query

    def _table_elements(self) -> Iterator[ElementTree.Element]:
        # Every element, however nested: a <link-entity> inside a <filter> reads its table too.
        return (element for element in self._root.iter() if element.tag in TABLE_ELEMENTS)

    @property
    def entity(self) -> str:
        """The logical name of the table the query reads rows of (its `<entity name>`)."""
        entity = self._root.find("entity")
        assert entity is not None  # parse() checked
        return entity.get("name", "")

    @property
    def top(self) -> int | None:
        top = self._root.get("top")
        return int(top) if top is not None and top.strip().isdigit() else None

    def tables(self) -> list[str]:
        """The table names of the `<entity>` and every `<link-entity>`, as written."""
        return [element.get("name", "") for element in self._table_elements()]

    def with_tables(self, rename: Callable[[str], str]) -> FetchQuery:
        """A copy whose table names are `rename(name)`: the resolved names that were checked are the ones sent."""
        root = copy.deepcopy(self._root)
        for element in root.iter():
            if element.tag in TABLE_ELEMENTS:
                element.set("name", rename(element.get("name", "")))
        return FetchQuery(root)

    def text(self) -> str:
        return ElementTree.tostring(self._root, encoding="unicode")

    def page_text(self, page: int, count: int, cookie: str | None) -> str:
        """The query with paging attributes for `page`; a query with `top` is sent as it is (one page)."""
        root = copy.deepcopy(self._root)
        for name in PAGING_ATTRIBUTES:
            root.attrib.pop(name, None)
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
