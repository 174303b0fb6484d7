"""Table metadata from `EntityDefinitions`, as typed models, cached with a TTL and loaded single-flight.

A table's columns, keys and relationships come in one request; its choices (picklist, state, status,
boolean and multi-select option sets) in one more request per type, and only when asked for, since only
the typed casts of `Attributes` carry option sets. Concurrent cold look-ups of one key share one request.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from ._errors import UnknownTable
from ._single_flight import SingleFlight

T = TypeVar("T")
LOOKUP_TYPES: Final = frozenset({"Lookup", "Customer", "Owner"})
CHOICE_CASTS: Final = (
    "PicklistAttributeMetadata",
    "StateAttributeMetadata",
    "StatusAttributeMetadata",
    "BooleanAttributeMetadata",
    "MultiSelectPicklistAttributeMetadata",
)
TABLE_PROPERTIES: Final = (
    "LogicalName",
    "SchemaName",
    "EntitySetName",
    "DisplayName",
    "DisplayCollectionName",
    "Description",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "ObjectTypeCode",
    "OwnershipType",
    "IsCustomEntity",
    "IsIntersect",
    "IsActivity",
    "IsPrivate",
    "ChangeTrackingEnabled",
)


def label_text(value: Any) -> str | None:
    if isinstance(value, dict):
        localized = value.get("UserLocalizedLabel")
        if isinstance(localized, dict) and localized.get("Label"):
            return str(localized["Label"])
    return None


def _managed_value(value: Any) -> Any:
    return value.get("Value") if isinstance(value, dict) else value


@dataclass(frozen=True)
class Choice:
    value: int
    label: str


@dataclass(frozen=True)
class Column:
    """One column (attribute) of a table."""

    logical_name: str
    schema_name: str
    attribute_type: str
    type_name: str | None
    display_name: str | None
    description: str | None
    required_level: str
    is_valid_for_create: bool
    is_valid_for_update: bool
    is_valid_for_read: bool
    is_primary_id: bool
    is_primary_name: bool
    is_custom: bool
    max_length: int | None = None
    min_value: float | None = None
    max_value: float | None = None
    precision: int | None = None
    format: str | None = None
    targets: tuple[str, ...] = ()
    is_odata_property: bool = True

    @property
    def is_lookup(self) -> bool:
        return self.attribute_type in LOOKUP_TYPES

    @property
    def property_name(self) -> str:
        """The Web API property: lookups read as `_<name>_value`."""
        return f"_{self.logical_name}_value" if self.is_lookup else self.logical_name

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Column:
        attribute_type = str(data.get("AttributeType") or "")
        type_name = _managed_value(data.get("AttributeTypeName"))
        is_odata = data.get("IsValidODataAttribute")
        if is_odata is None:
            is_odata = not data.get("AttributeOf") and (
                attribute_type != "Virtual" or type_name == "MultiSelectPicklistType"
            )
        return cls(
            logical_name=str(data["LogicalName"]),
            schema_name=str(data.get("SchemaName") or data["LogicalName"]),
            attribute_type=attribute_type,
            type_name=type_name,
            display_name=label_text(data.get("DisplayName")),
            description=label_text(data.get("Description")),
            required_level=str(_managed_value(data.get("RequiredLevel")) or "None"),
            is_valid_for_create=bool(data.get("IsValidForCreate")),
            is_valid_for_update=bool(data.get("IsValidForUpdate")),
            is_valid_for_read=data.get("IsValidForRead") is not False,
            is_primary_id=bool(data.get("IsPrimaryId")),
            is_primary_name=bool(data.get("IsPrimaryName")),
            is_custom=bool(data.get("IsCustomAttribute")),
            max_length=data.get("MaxLength"),
            min_value=data.get("MinValue"),
            max_value=data.get("MaxValue"),
            precision=data.get("Precision"),
            format=_managed_value(data.get("Format")) or _managed_value(data.get("FormatName")),
            targets=tuple(data.get("Targets") or ()),
            is_odata_property=bool(is_odata),
        )


@dataclass(frozen=True)
class Relationship:
    """A one-to-many relationship: `referencing_table.referencing_column` points at `referenced_table`."""

    schema_name: str
    referenced_table: str
    referenced_column: str
    referencing_table: str
    referencing_column: str
    referencing_navigation: str
    referenced_navigation: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Relationship:
        return cls(
            schema_name=str(data["SchemaName"]),
            referenced_table=str(data["ReferencedEntity"]),
            referenced_column=str(data.get("ReferencedAttribute") or ""),
            referencing_table=str(data["ReferencingEntity"]),
            referencing_column=str(data["ReferencingAttribute"]),
            referencing_navigation=str(data.get("ReferencingEntityNavigationPropertyName") or ""),
            referenced_navigation=str(data.get("ReferencedEntityNavigationPropertyName") or ""),
        )


@dataclass(frozen=True)
class ManyToManyRelationship:
    """A many-to-many relationship: rows of two tables linked by rows of `intersect_table`, each table reaching the
    other through its own collection-valued navigation property."""

    schema_name: str
    intersect_table: str
    first_table: str
    first_navigation: str
    second_table: str
    second_navigation: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManyToManyRelationship:
        return cls(
            schema_name=str(data["SchemaName"]),
            intersect_table=str(data.get("IntersectEntityName") or ""),
            first_table=str(data["Entity1LogicalName"]),
            first_navigation=str(data.get("Entity1NavigationPropertyName") or ""),
            second_table=str(data["Entity2LogicalName"]),
            second_navigation=str(data.get("Entity2NavigationPropertyName") or ""),
        )

    def sides(self, table: str) -> Iterator[tuple[str, str]]:
        """(navigation property of `table`, the table it reaches), once for each end of the relationship at `table`."""
        if self.first_table == table:
            yield self.first_navigation, self.second_table
        if self.second_table == table:
            yield self.second_navigation, self.first_table


@dataclass(frozen=True)
class AlternateKey:
    logical_name: str
    display_name: str | None
    columns: tuple[str, ...]


@dataclass(frozen=True)
class TableSummary:
    """What the table list says of a table: enough to find it by any of its names."""

    logical_name: str
    schema_name: str
    entity_set_name: str
    display_name: str | None
    display_collection_name: str | None
    description: str | None
    primary_id: str
    primary_name: str | None
    ownership: str | None
    is_custom: bool
    is_intersect: bool
    is_activity: bool
    is_private: bool = False  # for the platform's own use: not a table a user asks about
    change_tracking: bool = False  # ChangeTrackingEnabled: the service can say what changed since a delta token

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableSummary:
        return cls(
            logical_name=str(data["LogicalName"]),
            schema_name=str(data.get("SchemaName") or data["LogicalName"]),
            entity_set_name=str(data.get("EntitySetName") or ""),
            display_name=label_text(data.get("DisplayName")),
            display_collection_name=label_text(data.get("DisplayCollectionName")),
            description=label_text(data.get("Description")),
            primary_id=str(data.get("PrimaryIdAttribute") or f"{data['LogicalName']}id"),
            primary_name=data.get("PrimaryNameAttribute"),
            ownership=data.get("OwnershipType"),
            is_custom=bool(data.get("IsCustomEntity")),
            is_intersect=bool(data.get("IsIntersect")),
            is_activity=bool(data.get("IsActivity")),
            is_private=bool(data.get("IsPrivate")),
            change_tracking=bool(data.get("ChangeTrackingEnabled")),
        )

    def names(self) -> Iterable[str]:
        yield from (self.logical_name, self.entity_set_name, self.schema_name)
        yield from (name for name in (self.display_name, self.display_collection_name) if name)


@dataclass(frozen=True)
class TableMetadata:
    """A table with its columns, alternate keys and relationships."""

    summary: TableSummary
    columns: dict[str, Column]
    keys: tuple[AlternateKey, ...]
    many_to_one: tuple[Relationship, ...]
    one_to_many: tuple[Relationship, ...]
    many_to_many: tuple[ManyToManyRelationship, ...] = ()

    @property
    def logical_name(self) -> str:
        return self.summary.logical_name

    @property
    def entity_set_name(self) -> str:
        return self.summary.entity_set_name

    @property
    def primary_id(self) -> str:
        return self.summary.primary_id

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableMetadata:
        columns = [Column.from_json(attribute) for attribute in data.get("Attributes") or ()]
        return cls(
            summary=TableSummary.from_json(data),
            columns={column.logical_name: column for column in columns},
            keys=tuple(
                AlternateKey(
                    str(key["LogicalName"]), label_text(key.get("DisplayName")), tuple(key.get("KeyAttributes") or ())
                )
                for key in data.get("Keys") or ()
            ),
            many_to_one=tuple(Relationship.from_json(item) for item in data.get("ManyToOneRelationships") or ()),
            one_to_many=tuple(Relationship.from_json(item) for item in data.get("OneToManyRelationships") or ()),
            many_to_many=tuple(
                ManyToManyRelationship.from_json(item) for item in data.get("ManyToManyRelationships") or ()
            ),
        )

    def navigation_target(self, navigation: str) -> str | None:
        """The table a navigation property of this table reaches (single- or collection-valued), or None."""
        for relationship in self.many_to_one:
            if relationship.referencing_navigation == navigation:
                return relationship.referenced_table
        for relationship in self.one_to_many:
            if relationship.referenced_navigation == navigation:
                return relationship.referencing_table
        for many in self.many_to_many:
            for name, other in many.sides(self.logical_name):
                if name == navigation:
                    return other
        return None

    def has_property(self, name: str) -> bool:
        """Whether `name` is a column as the Web API names it (`name`, or `_primarycontactid_value`)."""
        if name.startswith("_") and name.endswith("_value"):
            column = self.columns.get(name[1:-6])
            return column is not None and column.is_lookup
        return name in self.columns

    def navigation_property(self, column: str, target: str) -> str | None:
        """The single-valued navigation property that sets lookup `column` to a row of `target`."""
        for relationship in self.many_to_one:
            if relationship.referencing_column == column and relationship.referenced_table == target:
                return relationship.referencing_navigation
        return None


@dataclass
class _Entry(Generic[T]):
    value: T
    loaded_at: float


@dataclass
class SingleFlightCache(Generic[T]):
    """Values by key with a TTL; concurrent misses of one key share one load, and a failure is not kept."""

    ttl: float
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, _Entry[T]] = field(default_factory=dict)
    _flights: SingleFlight[T] = field(default_factory=SingleFlight)

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        entry = self._entries.get(key)
        if entry is not None and self.clock() - entry.loaded_at < self.ttl:
            return entry.value

        async def load_and_keep() -> T:
            value = await load()
            self._entries[key] = _Entry(value, self.clock())
            return value

        return await self._flights.run(key, load_and_keep)

    def clear(self) -> None:
        self._entries.clear()


def closest_names(name: str, tables: Iterable[TableSummary], count: int = 3) -> list[str]:
    """The logical names of the tables whose names look most like `name`."""
    by_name: dict[str, str] = {}
    for table in tables:
        for candidate in table.names():
            by_name.setdefault(candidate.lower(), table.logical_name)
    matches = difflib.get_close_matches(name.lower(), list(by_name), n=count * 3, cutoff=0.5)
    found: list[str] = []
    for match in matches:
        if by_name[match] not in found:
            found.append(by_name[match])
    return found[:count]


def resolve_table_name(name: str, tables: Iterable[TableSummary]) -> TableSummary:
    """The table whose logical, entity set, schema or display name is `name` (case-insensitive)."""
    wanted = name.strip().lower()
    listed = list(tables)
    for table in listed:
        if wanted in (candidate.lower() for candidate in table.names()):
            return table
    raise UnknownTable(name, closest_names(name, listed))
