"""The tables the sandbox knows, read from EntityDefinitions-shaped metadata.

Every table is described once, as the JSON the real `EntityDefinitions` endpoint serves (see `_tables.py`);
`Table` and `Column` are the typed view of that JSON that the query engine and the store use, so what the
metadata says and what the Web API does cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, Literal

JsonObject = dict[str, Any]

ValueKind = Literal["string", "integer", "decimal", "boolean", "datetime", "guid", "choice", "choices"]

LOOKUP_TYPES: Final = frozenset({"Lookup", "Customer", "Owner"})
_KIND_BY_TYPE: Final[Mapping[str, ValueKind]] = {
    "String": "string",
    "Memo": "string",
    "EntityName": "string",
    "Integer": "integer",
    "BigInt": "integer",
    "Decimal": "decimal",
    "Double": "decimal",
    "Money": "decimal",
    "Boolean": "boolean",
    "DateTime": "datetime",
    "Uniqueidentifier": "guid",
    "Lookup": "guid",
    "Customer": "guid",
    "Owner": "guid",
    "Picklist": "choice",
    "State": "choice",
    "Status": "choice",
}


def label_of(labels: JsonObject | None) -> str | None:
    """The user-localized text of a metadata `Label`."""
    if not labels:
        return None
    localized = labels.get("UserLocalizedLabel")
    return localized.get("Label") if localized else None


@dataclass(frozen=True)
class Option:
    """One choice of a picklist, state, status or boolean column."""

    value: int
    label: str
    state: int | None = None


@dataclass(frozen=True)
class Column:
    """One attribute of a table, as the Web API exposes it."""

    table: str
    logical_name: str
    attribute_type: str
    display_name: str | None
    required_level: str
    is_valid_for_create: bool
    is_valid_for_update: bool
    max_length: int | None
    min_value: float | None
    max_value: float | None
    precision: int | None
    date_only: bool
    targets: tuple[str, ...]
    options: tuple[Option, ...]
    is_multi_select: bool = False

    @property
    def is_lookup(self) -> bool:
        return self.attribute_type in LOOKUP_TYPES

    @property
    def property_name(self) -> str:
        """The OData property: lookups are exposed as `_<name>_value`."""
        return f"_{self.logical_name}_value" if self.is_lookup else self.logical_name

    @property
    def kind(self) -> ValueKind:
        if self.is_multi_select:
            return "choices"
        return _KIND_BY_TYPE[self.attribute_type]

    def option_label(self, value: int) -> str | None:
        return next((option.label for option in self.options if option.value == value), None)


@dataclass(frozen=True)
class NavigationProperty:
    """A single-valued navigation property: the lookup `column` pointing at `target`."""

    name: str
    column: Column
    target: str
    relationship: str


@dataclass(frozen=True)
class AlternateKey:
    logical_name: str
    display_name: str
    columns: tuple[str, ...]


@dataclass
class Table:
    """One table: its names, its columns and the metadata JSON it is served as."""

    logical_name: str
    entity_set_name: str
    display_name: str
    primary_id: str
    primary_name: str
    ownership: str
    object_type_code: int
    metadata: JsonObject
    columns: dict[str, Column] = field(default_factory=dict)
    keys: tuple[AlternateKey, ...] = ()
    navigation: dict[str, NavigationProperty] = field(default_factory=dict)

    @property
    def is_user_owned(self) -> bool:
        return self.ownership == "UserOwned"

    @property
    def type_name(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"

    def column_by_property(self, name: str) -> Column | None:
        """The column behind an OData property name (`name`, `_ownerid_value`)."""
        if name.startswith("_") and name.endswith("_value"):
            column = self.columns.get(name[1:-6])
            return column if column and column.is_lookup else None
        column = self.columns.get(name)
        return None if column is None or column.is_lookup else column

    def stored_columns(self) -> Iterator[Column]:
        return iter(self.columns.values())

    @cached_property
    def money_with_base(self) -> tuple[str, ...]:
        """Money columns with a base-currency copy the platform computes (read per written row: cached)."""
        return tuple(
            name
            for name, column in self.columns.items()
            if column.attribute_type == "Money" and f"{name}_base" in self.columns
        )

    @cached_property
    def polymorphic_lookups(self) -> tuple[Column, ...]:
        """Lookups that can point to several tables, whose target table is stored beside them."""
        return tuple(column for column in self.columns.values() if column.is_lookup and len(column.targets) > 1)


def column_from_metadata(table: str, attribute: JsonObject) -> Column | None:
    """The Web API view of one attribute, or None when it is not an OData property."""
    attribute_type = attribute["AttributeType"]
    odata_type = attribute.get("@odata.type", "")
    is_multi_select = odata_type.endswith("MultiSelectPicklistAttributeMetadata")
    if attribute.get("AttributeOf") or (attribute_type == "Virtual" and not is_multi_select):
        return None
    if attribute_type not in _KIND_BY_TYPE and not is_multi_select:
        return None
    option_set = attribute.get("OptionSet") or {}
    options: list[Option] = []
    for key in ("FalseOption", "TrueOption"):
        if option_set.get(key):
            options.append(Option(option_set[key]["Value"], label_of(option_set[key]["Label"]) or ""))
    for option in option_set.get("Options") or []:
        options.append(Option(option["Value"], label_of(option["Label"]) or "", option.get("State")))
    required = attribute.get("RequiredLevel") or {}
    return Column(
        table=table,
        logical_name=attribute["LogicalName"],
        attribute_type=attribute_type,
        display_name=label_of(attribute.get("DisplayName")),
        required_level=required.get("Value", "None"),
        is_valid_for_create=bool(attribute.get("IsValidForCreate")),
        is_valid_for_update=bool(attribute.get("IsValidForUpdate")),
        max_length=attribute.get("MaxLength"),
        min_value=attribute.get("MinValue"),
        max_value=attribute.get("MaxValue"),
        precision=attribute.get("Precision"),
        date_only=attribute.get("Format") == "DateOnly",
        targets=tuple(attribute.get("Targets") or ()),
        options=tuple(options),
        is_multi_select=is_multi_select,
    )


def table_from_metadata(entity: JsonObject) -> Table:
    """The typed view of one `EntityDefinitions` entry (with `Attributes` and `Keys`)."""
    logical_name = entity["LogicalName"]
    table = Table(
        logical_name=logical_name,
        entity_set_name=entity["EntitySetName"],
        display_name=label_of(entity.get("DisplayName")) or entity["SchemaName"],
        primary_id=entity["PrimaryIdAttribute"],
        primary_name=entity["PrimaryNameAttribute"],
        ownership=entity["OwnershipType"],
        object_type_code=entity["ObjectTypeCode"],
        metadata=entity,
    )
    for attribute in entity["Attributes"]:
        column = column_from_metadata(logical_name, attribute)
        if column is not None:
            table.columns[column.logical_name] = column
    table.keys = tuple(
        AlternateKey(
            key["LogicalName"],
            label_of(key.get("DisplayName")) or key["LogicalName"],
            tuple(key["KeyAttributes"]),
        )
        for key in entity.get("Keys") or ()
    )
    for relationship in entity.get("ManyToOneRelationships") or ():
        column = table.columns.get(relationship["ReferencingAttribute"])
        if column is not None:
            name = relationship["ReferencingEntityNavigationPropertyName"]
            table.navigation[name] = NavigationProperty(
                name, column, relationship["ReferencedEntity"], relationship["SchemaName"]
            )
    return table


class Catalog:
    """All tables of one environment, found by logical or entity set name."""

    def __init__(self, tables: Iterable[Table]) -> None:
        self.tables: dict[str, Table] = {table.logical_name: table for table in tables}
        self._by_entity_set = {table.entity_set_name: table for table in self.tables.values()}

    def __iter__(self) -> Iterator[Table]:
        return iter(self.tables.values())

    def get(self, logical_name: str) -> Table | None:
        return self.tables.get(logical_name)

    def by_entity_set(self, entity_set_name: str) -> Table | None:
        return self._by_entity_set.get(entity_set_name)
