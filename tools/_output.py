"""Output made for a language model's context: rows without OData noise, compact table descriptions, budgets.

A row keeps each column's value under its logical name. A lookup becomes `{"id", "table", "name"}`, a choice
`{"value", "label"}`; dates stay ISO 8601 and numbers stay numbers. Nulls are dropped unless the caller named
the column. A table description is one short line per column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pydantic_core

from dataverse import Choice, Column, TableMetadata

FORMATTED: Final = "@OData.Community.Display.V1.FormattedValue"
LOOKUP_TABLE: Final = "@Microsoft.Dynamics.CRM.lookuplogicalname"
CHOICE_TYPES: Final = frozenset({"Picklist", "State", "Status"})
PLAIN_BOOLEAN_LABELS: Final = frozenset({"yes", "no", "true", "false"})
TablePredicate = Callable[[str], bool]  # whether the policy lets a table's data through


def shape_row(row: Mapping[str, Any], allows: TablePredicate, *, keep_nulls: bool = False) -> dict[str, Any]:
    """A Web API row (annotations included) as the tools return it.

    A lookup to a table that `allows` refuses keeps its id and table but not its name: the name is that table's
    data (its primary column), read through the lookup's formatted value.
    """
    shaped: dict[str, Any] = {}
    for key, value in row.items():
        # Most columns of a wide row are null: skip them (and annotations) before any other test.
        if (value is None and not keep_nulls) or "@" in key:
            continue
        if isinstance(value, dict):
            shaped[key] = shape_row(value, allows, keep_nulls=keep_nulls)
            continue
        if isinstance(value, list):
            shaped[key] = [
                shape_row(item, allows, keep_nulls=keep_nulls) if isinstance(item, dict) else item for item in value
            ]
            continue
        label = row.get(key + FORMATTED)
        if key.startswith("_") and key.endswith("_value"):
            name = key[1:-6]
            table = row.get(key + LOOKUP_TABLE)
            readable = isinstance(table, str) and allows(table)
            shaped[name] = None if value is None else _lookup(value, table, label if readable else None)
        elif label is not None and isinstance(value, int) and not isinstance(value, bool):
            shaped[key] = {"value": value, "label": label} if _is_choice_label(value, label) else value
        elif label is not None and isinstance(value, bool) and label.lower() not in PLAIN_BOOLEAN_LABELS:
            shaped[key] = {"value": value, "label": label}
        elif label is not None and isinstance(value, str) and "," in value and value.replace(",", "").isdigit():
            shaped[key] = {"value": value, "label": label}  # a multi-select choice
        else:
            shaped[key] = value
    return shaped


def _lookup(value: Any, table: Any, name: Any) -> dict[str, Any]:
    lookup: dict[str, Any] = {"id": value}
    if table:
        lookup["table"] = table
    if name:
        lookup["name"] = name
    return lookup


def _is_choice_label(value: int, label: str) -> bool:
    # Whole numbers come formatted too ("1,200"); a label that is not the number itself names a choice.
    return label.replace(",", "") != str(value)


@dataclass(frozen=True)
class Budget:
    """How much one result may hold."""

    max_rows: int
    max_bytes: int


def fit(rows: Iterable[dict[str, Any]], budget: Budget) -> tuple[list[dict[str, Any]], bool]:
    """The leading rows that fit the budget, and whether any were left out."""
    kept: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        # Measured as the compact UTF-8 JSON a result is sent as; pydantic-core's encoder is several times faster.
        row_size = len(pydantic_core.to_json(row, fallback=str)) + 1
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
    "Integer": "integer",
    "BigInt": "integer",
    "Decimal": "decimal",
    "Double": "float",
    "Money": "money",
    "Boolean": "yes/no",
    "Uniqueidentifier": "id",
    "EntityName": "table name",
}
MAX_INLINE_CHOICES: Final = 8


def is_listed_by_default(column: Column) -> bool:
    """Columns a default description shows: real properties, without currency-base and phonetic copies."""
    return column.is_odata_property and column.is_valid_for_read and not column.logical_name.endswith(_HIDDEN_SUFFIXES)


def _number_range(column: Column) -> str:
    low, high = column.min_value, column.max_value
    if low is None or high is None or (low, high) == _INT32 or column.attribute_type in ("Money", "BigInt"):
        return ""
    return f"[{low:g}..{high:g}]"


def _choices_text(choices: tuple[Choice, ...], full: bool) -> str:
    shown = choices if full or len(choices) <= MAX_INLINE_CHOICES else choices[:MAX_INLINE_CHOICES]
    text = ", ".join(f"{choice.value}={choice.label}" for choice in shown)
    if len(shown) < len(choices):
        text += f", … ({len(choices)} in all: describe this column alone for all)"
    return text


def describe_column(
    column: Column, choices: tuple[Choice, ...] | None, allows: TablePredicate, *, full_choices: bool
) -> str:
    """One line: type and limits, flags, label, choices."""
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
    if column.required_level in ("ApplicationRequired", "SystemRequired") and not column.is_primary_id:
        flags.append("required")
    if not column.is_valid_for_create and not column.is_valid_for_update:
        flags.append("read-only")
    elif not column.is_valid_for_update:
        flags.append("create-only")
    if flags:
        text += ", " + ", ".join(flags)
    if column.display_name:
        text += f", '{column.display_name}'"
    if choices:
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
        "display_name": summary.display_name,
        "primary_id": summary.primary_id,
        "primary_name": summary.primary_name,
        "columns": {
            column.logical_name: describe_column(
                column, choices.get(column.logical_name), allows, full_choices=bool(columns)
            )
            for column in sorted(chosen, key=lambda column: column.logical_name)
        },
    }
    if not columns:
        hidden = len(table.columns) - len(chosen)
        described["note"] = (
            f"{len(chosen)} of {len(table.columns)} columns; {hidden} derived or system copies left out. "
            'Lookups are written as {"table": ..., "id": ...}; choices by value or label.'
        )
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
    return described
