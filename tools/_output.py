"""Output made for a language model's context: rows without OData noise, compact table descriptions, budgets.

A row keeps each column's value under its logical name, and only the columns asked for (with the primary key).
A lookup becomes `{"id", "table", "name"}`, without the table where the column can point to that one only; a
choice `[value, label]`: the value to filter and write by, the label to read (a model reads `"value"` and
`"label"` once, not on every row). Dates stay ISO 8601 and numbers stay numbers; their formatted values only
restate them and are dropped. Nulls are dropped unless the caller named the column. A table description is one
short line per column. A result is sent as compact JSON, once as text and once as structured content.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, get_args

import pydantic_core
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from dataverse import Choice, Column, TableMetadata

FORMATTED: Final = "@OData.Community.Display.V1.FormattedValue"
LOOKUP_TABLE: Final = "@Microsoft.Dynamics.CRM.lookuplogicalname"
CHOICE_TYPES: Final = frozenset({"Picklist", "State", "Status"})
PLAIN_BOOLEAN_LABELS: Final = frozenset({"yes", "no", "true", "false"})
TablePredicate = Callable[[str], bool]  # whether the policy lets a table's data through
_EXACT_INTEGERS: Final = 2**53  # a float below this that is whole prints as the same integer, and shorter


def shape_row(
    row: Mapping[str, Any],
    allows: TablePredicate,
    *,
    table: TableMetadata | None = None,
    select: Collection[str] = (),
    keep_nulls: bool = False,
) -> dict[str, Any]:
    """A Web API row (annotations included) as the tools return it.

    With the row's `table`, a lookup that can point to one table only leaves that table out, and when `select`
    names columns, the row holds those and the primary key only (the service adds columns of its own: a money
    column brings the row's currency). A lookup to a table that `allows` refuses keeps its id and table but not
    its name: the name is that table's data (its primary column), read through the lookup's formatted value.
    """
    columns = table.columns if table is not None else {}
    wanted = {name.lower() for name in select} | {table.primary_id} if table is not None and select else None
    shaped: dict[str, Any] = {}
    for key, value in row.items():
        # Most columns of a wide row are null: skip them (and annotations) before any other test.
        if (value is None and not keep_nulls) or "@" in key:
            continue
        if isinstance(value, dict):  # an expanded row
            shaped[key] = shape_row(value, allows, keep_nulls=keep_nulls)
            continue
        if isinstance(value, list):  # expanded rows
            shaped[key] = [
                shape_row(item, allows, keep_nulls=keep_nulls) if isinstance(item, dict) else item for item in value
            ]
            continue
        is_property = key.startswith("_") and key.endswith("_value")
        # An aliased lookup (a FetchXML aggregate's `groupby`, a link-entity's column) is known by its annotation.
        is_lookup = is_property or (isinstance(value, str) and key + LOOKUP_TABLE in row)
        name = key[1:-6] if is_property else key
        if wanted is not None and name not in wanted and name in columns:
            continue  # a column nobody asked for
        label = row.get(key + FORMATTED)
        if is_lookup:
            lookup_table = row.get(key + LOOKUP_TABLE)
            shaped[name] = None if value is None else _lookup(value, lookup_table, label, allows, columns.get(name))
        elif label is not None and isinstance(value, int) and not isinstance(value, bool):
            shaped[key] = [value, label] if _is_choice_label(value, label) else value
        elif label is not None and isinstance(value, bool) and label.lower() not in PLAIN_BOOLEAN_LABELS:
            shaped[key] = [value, label]
        elif label is not None and isinstance(value, str) and value.replace(",", "").isdigit():
            shaped[key] = [value, label]  # a multi-select choice: "1,3", "Email; Phone" (or "3", "Phone")
        elif isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_INTEGERS:
            shaped[key] = int(value)  # 49254000.0 says no more than 49254000
        else:
            shaped[key] = value
    return shaped


def _lookup(value: Any, table: Any, name: Any, allows: TablePredicate, column: Column | None) -> dict[str, Any]:
    lookup: dict[str, Any] = {"id": value}
    readable = isinstance(table, str) and allows(table)
    # The table goes without saying when the column can point to that one only; a refused table is always named,
    # so that a lookup without its name says why.
    if table and not (readable and column is not None and column.targets == (table,)):
        lookup["table"] = table
    if name and readable:
        lookup["name"] = name
    return lookup


def _is_choice_label(value: int, label: str) -> bool:
    # Whole numbers come formatted too ("1,200"); a label that is not the number itself names a choice.
    return label.replace(",", "") != str(value)


def structured_result(result: BaseModel) -> CallToolResult:
    """A tool's result as sent: its structured content, and the same JSON as compact text.

    A field left null is left out (a cursor on the last page, a count nobody asked for), except a yes/no whose
    null means "unknown". Rows keep their nulls: there a null names a column the caller asked for.
    """
    content = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    for name, field in type(result).model_fields.items():
        if getattr(result, name) is None and set(get_args(field.annotation)) == {bool, type(None)}:
            content[field.alias or name] = None
    text = pydantic_core.to_json(content).decode()  # compact, and several times faster than `json`
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=content)


def json_size(value: Any) -> int:
    """UTF-8 bytes of `value` as compact JSON, as a result sends it."""
    return len(pydantic_core.to_json(value, fallback=str))


@dataclass(frozen=True)
class Budget:
    """How much one result may hold."""

    max_rows: int
    max_bytes: int


def fit(rows: Iterable[dict[str, Any]], budget: Budget) -> tuple[list[dict[str, Any]], bool]:
    """The leading rows that fit the budget, and whether any were left out.

    The size is that of the rows' JSON array in the result's text (and in its structured content): each row's
    compact JSON, the commas between them and the brackets.
    """
    kept: list[dict[str, Any]] = []
    size = 1  # "["
    for row in rows:
        row_size = json_size(row) + 1  # and "," (or the closing "]")
        if len(kept) >= budget.max_rows or (kept and size + row_size > budget.max_bytes):
            return kept, True
        kept.append(row)
        size += row_size
    return kept, False


# -- table descriptions -------------------------------------------------------------------------------------

_INT32: Final = (-2147483648, 2147483647)
_HIDDEN_SUFFIXES: Final = ("_base", "yominame")
_TYPE_WORDS: Final = {
    "String": "text",
    "Memo": "text",
    "Integer": "int",
    "BigInt": "int",
    "Decimal": "decimal",
    "Double": "float",
    "Money": "money",
    "Boolean": "yes/no",
    "Uniqueidentifier": "id",
    "EntityName": "table name",
}
MAX_INLINE_CHOICES: Final = 8
# What a create may leave out of a column the service requires: it fills the owner and the first state itself.
_FILLED_ON_CREATE: Final = {"Owner": "defaults to the caller", "State": ""}
_LOOKUP_WRITING: Final = 'Write a lookup as {"table": ..., "id": ...}, a choice by value or label.'


def is_listed_by_default(column: Column) -> bool:
    """Columns a default description shows: real properties, without currency-base and phonetic copies."""
    return column.is_odata_property and column.is_valid_for_read and not column.logical_name.endswith(_HIDDEN_SUFFIXES)


def restates(display_name: str, logical_name: str) -> bool:
    """Whether a display name only spells out the logical name ("Account Number" of accountnumber, "GDPR Optout"
    of msdyn_gdproptout, "Primary Contact" of primarycontactid): a model learns nothing from it."""
    words = "".join(character for character in display_name.lower() if character.isalnum())
    spellings = (logical_name.replace("_", ""), logical_name.partition("_")[2].replace("_", ""))
    return any(words in (spelling, spelling.removesuffix("id")) for spelling in spellings if spelling)


def _number_range(column: Column) -> str:
    low, high = column.min_value, column.max_value
    if low is None or high is None or (low, high) == _INT32 or column.attribute_type in ("Money", "BigInt"):
        return ""
    return f"[{low:g}..{high:g}]"


def _choices_text(choices: tuple[Choice, ...], full: bool) -> str:
    shown = choices if full or len(choices) <= MAX_INLINE_CHOICES else choices[:MAX_INLINE_CHOICES]
    text = ", ".join(f"{choice.value}={choice.label}" for choice in shown)
    if len(shown) < len(choices):
        text += f", … ({len(choices)} in all)"
    return text


def _requirement(column: Column) -> str:
    """What a write must give: the service refuses a create without a required column; forms only ask for a
    recommended one (their "business required"), and the Web API accepts a create without it."""
    if column.is_primary_id or not (column.is_valid_for_create or column.is_valid_for_update):
        return ""
    if column.required_level == "SystemRequired":
        return _FILLED_ON_CREATE.get(column.attribute_type, "required")
    if column.required_level == "ApplicationRequired":
        return "recommended (forms only)"
    return ""


def describe_column(
    column: Column, choices: tuple[Choice, ...] | None, allows: TablePredicate, *, full_choices: bool
) -> str:
    """One line: type and limits, flags, label (unless it restates the name), choices."""
    kind = column.attribute_type
    if column.type_name == "MultiSelectPicklistType":
        text = "choices"
    elif kind in CHOICE_TYPES:
        text = "choice"
    elif column.is_lookup:
        targets = [target for target in column.targets if allows(target)]
        text = f"lookup→{'|'.join(targets) or '(not available)'}"
    elif kind == "DateTime":
        text = "date" if column.format == "DateOnly" else "datetime"
    else:
        text = _TYPE_WORDS.get(kind, kind.lower())
    if kind in ("String", "Memo") and column.max_length:
        text += f"({column.max_length})"
    text += _number_range(column)
    flags = []
    if column.is_primary_id:
        flags.append("primary key")
    if column.is_primary_name:
        flags.append("primary name")
    flags.append(_requirement(column))
    if not column.is_valid_for_create and not column.is_valid_for_update:
        flags.append("read-only")
    elif not column.is_valid_for_update:
        flags.append("create-only")
    if column.display_name and not restates(column.display_name, column.logical_name):
        flags.append(f"'{column.display_name}'")
    text = ", ".join([text, *(flag for flag in flags if flag)])
    plain = kind == "Boolean" and all(choice.label.lower() in PLAIN_BOOLEAN_LABELS for choice in choices or ())
    if choices and not plain:  # a yes/no column's "0=No, 1=Yes" says nothing; "0=Allow, 1=Do Not Allow" does
        text += ": " + _choices_text(choices, full_choices)
    return text


def table_description(
    table: TableMetadata,
    choices: Mapping[str, tuple[Choice, ...]],
    allows: TablePredicate,
    *,
    columns: list[str] | None,
    include_relationships: bool,
    include_keys: bool,
) -> dict[str, Any]:
    summary = table.summary
    if columns:
        wanted = {name.lower() for name in columns}
        chosen = [column for column in table.columns.values() if column.logical_name.lower() in wanted]
        missing = wanted - {column.logical_name.lower() for column in chosen}
        if missing:
            from ._errors import unknown_columns

            raise unknown_columns(table, sorted(missing))
    else:
        chosen = [column for column in table.columns.values() if is_listed_by_default(column)]
    described: dict[str, Any] = {
        "table": summary.logical_name,
        "entity_set": summary.entity_set_name,
        "primary_id": summary.primary_id,
        "primary_name": summary.primary_name,
        "columns": {
            column.logical_name: describe_column(
                column, choices.get(column.logical_name), allows, full_choices=bool(columns)
            )
            for column in sorted(chosen, key=lambda column: column.logical_name)
        },
    }
    if summary.display_name and not restates(summary.display_name, summary.logical_name):
        described["display_name"] = summary.display_name
    if not columns:
        hidden = len(table.columns) - len(chosen)
        cut = any(len(choices.get(column.logical_name, ())) > MAX_INLINE_CHOICES for column in chosen)
        described["note"] = " ".join(
            [
                f"{len(chosen)} of {len(table.columns)} columns ({hidden} derived copies left out).",
                _LOOKUP_WRITING,
                "Describe a column alone for all its choices." if cut else "",
            ]
        ).strip()
    if include_keys:
        described["keys"] = {key.logical_name: list(key.columns) for key in table.keys}
    if include_relationships:
        # Navigation property → what it reaches: for $expand and for understanding lookups.
        described["relationships"] = {
            relationship.referencing_navigation: f"{relationship.referencing_column} → {relationship.referenced_table}"
            for relationship in table.many_to_one
            if allows(relationship.referenced_table)
        } | {
            relationship.referenced_navigation: (
                f"{relationship.referencing_table} rows by {relationship.referencing_column}"
            )
            for relationship in table.one_to_many
            if allows(relationship.referencing_table)
        }
        described["relationships"].update(
            (navigation, f"{other} rows, N:N")
            for relationship in table.many_to_many
            for navigation, other in relationship.sides(table.logical_name)
            if allows(other)
        )
    return described
