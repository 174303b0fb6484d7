"""What Dataverse search has indexed in the sandbox: the environments it is on in, the tables and their columns.

"Search for Dataverse records": search is on by default in production environments, and an administrator must turn
it on elsewhere; a table is searchable once `SyncToExternalSearchIndex` is set (its EntityDefinitions entry says so,
see `_tables.py`), and its searchable columns are those of its Quick Find view. The sandbox's index is this data;
the rows themselves are read from the store at each query, so the index is never behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ._catalog import Column, Table
from ._directory import ENVIRONMENTS

# No administrator of the sandbox has turned search on outside production: add an environment's name to do so.
ENABLED_ENVIRONMENTS: Final = frozenset(spec.name for spec in ENVIRONMENTS if spec.purpose == "Production")
# Every indexed table keeps these besides its own columns, as the status page's example lists them for account.
_SYSTEM_COLUMNS: Final = (
    "ownerid",
    "owningbusinessunit",
    "statecode",
    "statuscode",
    "createdon",
    "modifiedon",
    "versionnumber",
)
# The index field names of the system columns in the status page's example; other columns get `a<number>`.
_SYSTEM_FIELD_NAMES: Final = {
    "primaryid": "a_0",
    "ownerid": "b_0",
    "owningbusinessunit": "c_0",
    "primaryname": "d_0",
    "versionnumber": "e_0",
    "statecode": "f_0",
    "statuscode": "g_0",
    "createdon": "i_0",
    "modifiedon": "j_0",
}


@dataclass(frozen=True)
class IndexedTable:
    """A table enabled for search: `searched` are its Quick Find view's find columns, `kept` its view columns,
    returned, filtered, faceted and ordered on but not searched."""

    searched: tuple[str, ...]
    kept: tuple[str, ...] = ()


SEARCH_INDEX: Final[Mapping[str, IndexedTable]] = {
    # A lookup is searched by the name of the row it points to; Primary Contact as a find column is our choice.
    "account": IndexedTable(
        ("name", "accountnumber", "emailaddress1", "telephone1", "telephone2", "address1_city", "primarycontactid"),
        ("industrycode", "revenue"),
    ),
    "contact": IndexedTable(
        ("fullname", "firstname", "lastname", "emailaddress1", "telephone1", "mobilephone", "address1_city"),
        ("parentcustomerid", "jobtitle"),
    ),
    "lead": IndexedTable(
        ("fullname", "companyname", "subject", "emailaddress1", "telephone1"),
        ("parentaccountid", "leadsourcecode", "leadqualitycode", "estimatedamount"),
    ),
    "opportunity": IndexedTable(("name",), ("parentaccountid", "customerid", "estimatedvalue", "estimatedclosedate")),
    "incident": IndexedTable(("title", "ticketnumber"), ("customerid", "prioritycode", "caseorigincode")),
}


def is_indexed(table: Table) -> bool:
    return table.logical_name in SEARCH_INDEX


def searchable_columns(table: Table) -> tuple[str, ...]:
    """The columns a search may look in: the primary name and the Quick Find view's find columns."""
    return tuple(dict.fromkeys((table.primary_name, *SEARCH_INDEX[table.logical_name].searched)))


def indexed_columns(table: Table) -> dict[str, Column]:
    """Every column of `table` its index holds, by logical name: ids, names, system and view columns."""
    indexed = SEARCH_INDEX[table.logical_name]
    names = (table.primary_id, table.primary_name, *indexed.searched, *_SYSTEM_COLUMNS, *indexed.kept)
    return {name: table.columns[name] for name in dict.fromkeys(names) if name in table.columns}


def index_field_names(tables: list[Table]) -> dict[str, dict[str, str]]:
    """Per table, the field of the index each column is stored in, numbered across the index as the service does."""
    fields: dict[str, dict[str, str]] = {}
    number = 32  # the first the status page's example shows: `a0w`
    for table in tables:
        named = {}
        for name in indexed_columns(table):
            role = {table.primary_id: "primaryid", table.primary_name: "primaryname"}.get(name, name)
            if role in _SYSTEM_FIELD_NAMES:
                named[name] = _SYSTEM_FIELD_NAMES[role]
            else:
                named[name] = "a" + _base36(number)
                number += 1
        fields[table.logical_name] = named
    return fields


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while number or len(text) < 2:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
    return text
