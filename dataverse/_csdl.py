"""The service's operations, read from its CSDL `$metadata` document: actions and functions with their parameters.

The document is large (20 MB and more in a real environment: every table's properties and navigation properties)
and only a small part of it matters here, so it is read as a stream of parser events, never as a tree: each chunk
of the response body is fed as it arrives, and the reader keeps only what an operation call needs:

    <Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm">
      <EntityType Name="lead" BaseType="mscrm.crmbaseentity">...</EntityType>      the tables (name, base type)
      <EnumType Name="TargetFieldType"><Member Name="All" Value="0"/>...</EnumType>  enum members
      <Action Name="QualifyLead" IsBound="true">                                    every Action and Function
        <Parameter Name="entity" Type="mscrm.lead" Nullable="false"/>               the binding parameter
        <Parameter Name="CreateAccount" Type="Edm.Boolean" Nullable="false"/>
        <ReturnType Type="Collection(mscrm.crmbaseentity)" Nullable="false"/>
      </Action>

(Microsoft's "Web API service documents", "Web API actions" and "Web API functions" pages.) A DOCTYPE or an
entity declaration is refused, as in FetchXML: the document is data, never instructions to the parser. Sizes are
bounded: a document that declares more operations or parameters than any real environment does is refused.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final, Literal
from xml.parsers import expat

from ._errors import DataverseError
from ._odata import InvalidQuery

EDM: Final = "http://docs.oasis-open.org/odata/ns/edm"
EDMX: Final = "http://docs.oasis-open.org/odata/ns/edmx"
SERVICE_NAMESPACE: Final = "Microsoft.Dynamics.CRM"
MAX_OPERATIONS: Final = 50_000  # declarations (overloads count); a real environment declares a few thousand
MAX_PARAMETERS: Final = 200  # of one operation
MAX_MEMBERS: Final = 5_000  # of one enum type

OperationKind = Literal["action", "function"]
TypeKind = Literal["primitive", "entity", "complex", "enum"]


class UnknownOperation(InvalidQuery):
    """No action or function of the environment has that name; knows the closest names."""

    def __init__(self, name: str, closest: Iterable[str]) -> None:
        found = list(closest)
        suggestion = f" Did you mean {', '.join(repr(candidate) for candidate in found)}?" if found else ""
        super().__init__(
            f"No action or function named {name!r}.{suggestion}", hint="Use list_actions to find operations."
        )
        self.name = name
        self.closest = tuple(found)


@dataclass(frozen=True, slots=True)
class OperationType:
    """A parameter's or result's type: `Edm.Int32`, or a type of the service (`lead`, `WhoAmIResponse`)."""

    name: str  # Edm types keep their namespace; the service's types are named without it
    kind: TypeKind
    collection: bool = False

    def __str__(self) -> str:
        return f"Collection({self.name})" if self.collection else self.name


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    type: OperationType
    nullable: bool = True  # CSDL's default; Nullable="false" makes a parameter required

    def __str__(self) -> str:
        return f"{self.name}: {self.type}" + ("" if not self.nullable else " (optional)")


@dataclass(frozen=True, slots=True)
class Operation:
    """An action (POST, may change data) or a function (GET, reads), bound to a table or a table's set, or not."""

    name: str
    kind: OperationKind
    parameters: tuple[Parameter, ...]  # without the binding parameter, in declared order
    returns: OperationType | None = None
    binding: OperationType | None = None  # the table (or, as a collection, the table's set) it is bound to

    @property
    def is_action(self) -> bool:
        return self.kind == "action"

    @property
    def table(self) -> str | None:
        """The table it is bound to (a row of it, or its entity set), if any."""
        return self.binding.name if self.binding is not None else None

    @property
    def bound_to_row(self) -> bool:
        return self.binding is not None and not self.binding.collection

    def parameter(self, name: str) -> Parameter | None:
        return next((parameter for parameter in self.parameters if parameter.name == name), None)

    def signature(self) -> str:
        """`QualifyLead(CreateAccount: Edm.Boolean, ...) -> Collection(crmbaseentity)`, for messages."""
        returns = f" -> {self.returns}" if self.returns is not None else ""
        return f"{self.name}({', '.join(str(parameter) for parameter in self.parameters)}){returns}"


@dataclass(frozen=True)
class OperationCatalog:
    """The operations of one environment by name (overloads together), its tables' types and its enum types."""

    operations: dict[str, tuple[Operation, ...]]
    entity_types: dict[str, str | None] = field(default_factory=dict)  # table type -> its base type
    enum_types: dict[str, dict[str, int]] = field(default_factory=dict)  # enum type -> member -> value

    def __len__(self) -> int:
        return sum(len(overloads) for overloads in self.operations.values())

    def __iter__(self) -> Iterator[Operation]:
        for overloads in self.operations.values():
            yield from overloads

    def named(self, name: str) -> tuple[Operation, ...]:
        """The declarations of `name` (any case); UnknownOperation names the closest ones."""
        overloads = self.operations.get(name)
        if overloads is None:
            wanted = name.strip().lower()
            overloads = next((found for key, found in self.operations.items() if key.lower() == wanted), None)
        if overloads is None:
            raise UnknownOperation(name, self.closest(name))
        return overloads

    def declared_name(self, name: str) -> str | None:
        """The name as the service declares it, for a name in any case; None when there is no such operation."""
        try:
            return self.named(name)[0].name
        except UnknownOperation:
            return None

    def closest(self, name: str, count: int = 3) -> list[str]:
        by_lower = {key.lower(): key for key in self.operations}
        matches = difflib.get_close_matches(name.strip().lower(), list(by_lower), n=count, cutoff=0.6)
        return [by_lower[match] for match in matches]

    def choose(self, name: str, table: str | None, *, row: bool) -> Operation:
        """The declaration of `name` bound to a row (`row`) or the set of `table`, or the unbound one (no table).

        A table's own binding is preferred over one to a base type (`crmbaseentity`) that it derives from.
        """
        overloads = self.named(name)
        if table is None:
            for operation in overloads:
                if operation.binding is None:
                    return operation
            bound = overloads[0]
            where = "a row of" if bound.bound_to_row else "the set of"
            needed = "table and id" if bound.bound_to_row else "table"
            raise InvalidQuery(f"{bound.name} is bound to {where} {bound.table}: give {needed}.")
        candidates = [operation for operation in overloads if operation.binding is not None]
        for exact in (True, False):
            for operation in candidates:
                binding = operation.binding
                assert binding is not None
                matches = binding.name == table if exact else self.derives_from(table, binding.name)
                if matches and operation.bound_to_row == row:
                    return operation
        if candidates:
            bindings = " or ".join(_binding_text(operation.bound_to_row, operation.table) for operation in candidates)
            wanted = _binding_text(row, table)
            raise InvalidQuery(f"{overloads[0].name} is bound to {bindings}, not to {wanted}.")
        raise InvalidQuery(f"{overloads[0].name} is not bound to a table: leave out table and id.")

    def derives_from(self, table: str, base: str) -> bool:
        """Whether the table's type is `base` or derives from it (every table derives from `crmbaseentity`)."""
        seen: set[str] = set()
        current: str | None = table
        while current is not None and current not in seen:
            if current == base:
                return True
            seen.add(current)
            current = self.entity_types.get(current)
        return False

    @cached_property
    def base_types(self) -> frozenset[str]:
        """The entity types other tables' types derive from (`crmbaseentity`, `activitypointer`, `principal`)."""
        return frozenset(base for base in self.entity_types.values() if base is not None)


def _binding_text(row: bool, table: str | None) -> str:
    return f"{'a row' if row else 'the set'} of {table}"


class InvalidMetadata(DataverseError):
    """The `$metadata` document is not a CSDL document this client can use."""

    hint = "The environment's $metadata could not be read; try again, or check the environment URL."


@dataclass
class _Declaring:
    """An operation while its elements are read."""

    name: str
    kind: OperationKind
    bound: bool
    parameters: list[tuple[str, str, bool]] = field(default_factory=list)  # (name, raw type, nullable)
    returns: str | None = None


class CsdlReader:
    """Reads a CSDL document fed in chunks (`feed`), keeping only operations, tables' types and enum types."""

    def __init__(self) -> None:
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.buffer_text = True
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.StartDoctypeDeclHandler = self._refuse_doctype
        parser.EntityDeclHandler = self._refuse_entity
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._parser = parser
        self._started = False
        self._qualifiers: set[str] = {SERVICE_NAMESPACE}  # the schemas' namespaces and aliases
        self._declared: list[_Declaring] = []
        self._current: _Declaring | None = None
        self._entity_types: dict[str, str | None] = {}
        self._complex_types: set[str] = set()
        self._enum_types: dict[str, dict[str, int]] = {}
        self._enum: dict[str, int] | None = None

    def feed(self, data: bytes) -> None:
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as error:
            raise InvalidMetadata(f"The service's $metadata is not well-formed XML ({error}).") from None

    def close(self) -> OperationCatalog:
        """The catalog of everything fed; raises InvalidMetadata if the document is incomplete or not CSDL."""
        try:
            self._parser.Parse(b"", True)
        except expat.ExpatError as error:
            raise InvalidMetadata(f"The service's $metadata is not well-formed XML ({error}).") from None
        if not self._started:
            raise InvalidMetadata("The service's $metadata is empty.")
        operations: dict[str, list[Operation]] = {}
        for declaring in self._declared:
            operations.setdefault(declaring.name, []).append(self._operation(declaring))
        return OperationCatalog(
            {name: tuple(overloads) for name, overloads in operations.items()},
            dict(self._entity_types),
            dict(self._enum_types),
        )

    # -- parser events -----------------------------------------------------------------------------------------

    def _refuse_doctype(self, *_: object) -> None:
        raise InvalidMetadata("The service's $metadata holds a DOCTYPE; it was not read.")

    def _refuse_entity(self, *_: object) -> None:
        raise InvalidMetadata("The service's $metadata declares entities; it was not read.")

    def _start(self, tag: str, attributes: dict[str, str]) -> None:
        namespace, _, name = tag.rpartition(" ")
        if not self._started:
            self._started = True
            if (namespace, name) != (EDMX, "Edmx"):
                raise InvalidMetadata(f"The service's $metadata is not a CSDL document (its root is <{name}>).")
        if namespace != EDM:
            return
        if name in ("Action", "Function"):
            if len(self._declared) >= MAX_OPERATIONS:
                raise InvalidMetadata(f"The service's $metadata declares more than {MAX_OPERATIONS:,} operations.")
            kind: OperationKind = "action" if name == "Action" else "function"
            bound = attributes.get("IsBound", "false").lower() == "true"
            self._current = _Declaring(sys.intern(attributes.get("Name", "")), kind, bound)
        elif name == "Parameter" and self._current is not None:
            if len(self._current.parameters) >= MAX_PARAMETERS:
                raise InvalidMetadata(f"{self._current.name} declares more than {MAX_PARAMETERS} parameters.")
            nullable = attributes.get("Nullable", "true").lower() != "false"
            self._current.parameters.append(
                (sys.intern(attributes.get("Name", "")), sys.intern(attributes.get("Type", "")), nullable)
            )
        elif name == "ReturnType" and self._current is not None:
            self._current.returns = sys.intern(attributes.get("Type", ""))
        elif name == "EntityType":
            base = attributes.get("BaseType")
            self._entity_types[sys.intern(attributes.get("Name", ""))] = self._local(base) if base else None
        elif name == "ComplexType":
            self._complex_types.add(attributes.get("Name", ""))
        elif name == "EnumType":
            self._enum = self._enum_types.setdefault(attributes.get("Name", ""), {})
        elif name == "Member" and self._enum is not None:
            if len(self._enum) >= MAX_MEMBERS:
                raise InvalidMetadata(f"An enum type of the service's $metadata has more than {MAX_MEMBERS} members.")
            value = attributes.get("Value", str(len(self._enum)))
            self._enum[attributes.get("Name", "")] = int(value) if value.lstrip("-").isdigit() else len(self._enum)
        elif name == "Schema":
            self._qualifiers.update(attributes[key] for key in ("Namespace", "Alias") if attributes.get(key))

    def _end(self, tag: str) -> None:
        name = tag.rpartition(" ")[2]
        if name in ("Action", "Function") and self._current is not None:
            self._declared.append(self._current)
            self._current = None
        elif name == "EnumType":
            self._enum = None

    # -- types -------------------------------------------------------------------------------------------------

    def _local(self, qualified: str) -> str:
        """`lead` of `mscrm.lead` or `Microsoft.Dynamics.CRM.lead`; a name of another namespace stays whole."""
        qualifier, _, local = qualified.rpartition(".")
        return sys.intern(local) if qualifier in self._qualifiers else qualified

    def _type(self, raw: str) -> OperationType:
        collection = raw.startswith("Collection(") and raw.endswith(")")
        inner = raw[len("Collection(") : -1] if collection else raw
        if inner.startswith("Edm."):
            return OperationType(inner, "primitive", collection)
        name = self._local(inner)
        kind: TypeKind = "entity" if name in self._entity_types else "enum" if name in self._enum_types else "complex"
        return OperationType(name, kind, collection)

    def _operation(self, declaring: _Declaring) -> Operation:
        parameters = [Parameter(name, self._type(raw), nullable) for name, raw, nullable in declaring.parameters]
        binding = None
        if declaring.bound and parameters:
            binding = parameters.pop(0).type  # "The first Parameter element ... represents the entity"
        return Operation(
            declaring.name,
            declaring.kind,
            tuple(parameters),
            self._type(declaring.returns) if declaring.returns else None,
            binding,
        )


def parse_metadata(document: bytes | str) -> OperationCatalog:
    """The catalog of a whole CSDL document (tests, and documents already in memory)."""
    reader = CsdlReader()
    reader.feed(document.encode() if isinstance(document, str) else document)
    return reader.close()
