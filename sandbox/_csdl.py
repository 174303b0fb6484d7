"""`GET [api]/$metadata`: the CSDL document describing the environment's tables and operations.

"Web API Service Documents" (CSDL $metadata document): an XML document, `edmx:Edmx` version 4.0, whose one
`Schema` has `Namespace="Microsoft.Dynamics.CRM" Alias="mscrm"`, and which "describes all the tables and
operations that you can use in your environment". It is generated from the sandbox's catalog, so it cannot
disagree with `EntityDefinitions` or with what queries accept:

- an `EntityType` per table, derived from the abstract `crmbaseentity`, with its `Key`, a `Property` per column
  (a lookup as `_<name>_value`, `Edm.Guid`), single-valued navigation properties with their referential
  constraint, and collection-valued ones for one-to-many and many-to-many relationships ("Web API EntityTypes",
  "Web API navigation properties");
- the `ComplexType`s, `EnumType`s, `Action`s and `Function`s `_operations.py` declares ("Use Web API actions",
  "Use Web API functions": a bound operation has `IsBound="true"` and the bound entity as its first parameter);
- an `EntityContainer` with an `EntitySet` per table and an `ActionImport`/`FunctionImport` per unbound operation.

With `metadata_padding_mb`, the document also declares synthetic custom tables until it reaches that size, as
large organizations' documents do (tens of megabytes); they are declared only, never served. It is generated
piece by piece and streamed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Final
from xml.sax.saxutils import quoteattr

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ._catalog import Catalog, Column, Table
from ._errors import ODATA_ERROR, WebApiError
from ._operations import COMPLEX_TYPES, ENUM_TYPES, OPERATIONS, Operation, Parameter

if TYPE_CHECKING:
    from ._webapi import WebApi

XML_TYPE: Final = "application/xml"
_EDM_TYPES: Final = {
    "String": "Edm.String",
    "Memo": "Edm.String",
    "EntityName": "Edm.String",
    "Integer": "Edm.Int32",
    "BigInt": "Edm.Int64",
    "Decimal": "Edm.Decimal",
    "Double": "Edm.Double",
    "Money": "Edm.Decimal",
    "Boolean": "Edm.Boolean",
    "DateTime": "Edm.DateTimeOffset",
    "Uniqueidentifier": "Edm.Guid",
    "Lookup": "Edm.Guid",
    "Customer": "Edm.Guid",
    "Owner": "Edm.Guid",
    "Picklist": "Edm.Int32",
    "State": "Edm.Int32",
    "Status": "Edm.Int32",
}
# Types operations name that the sandbox does not serve as tables: declared (key only) so the document is whole.
_DECLARED_ONLY: Final = {"campaign": "campaignid"}
_HEAD: Final = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">'
    '<edmx:Reference Uri="http://vocabularies.odata.org/OData.Core.V1.xml">'
    '<edmx:Include Namespace="Org.OData.Core.V1" Alias="Core"/></edmx:Reference>'
    "<edmx:DataServices>"
    '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
    '<EntityType Name="crmbaseentity" Abstract="true"/>'
    '<EntityType Name="expando" BaseType="mscrm.crmbaseentity" OpenType="true"/>'
)
_TAIL: Final = "</Schema></edmx:DataServices></edmx:Edmx>"
_PADDING_PREFIX: Final = "cr8a1_padding"


def answer_csdl(web_api: WebApi, request: Request) -> Response:
    """The document: whole when small, streamed when padded to a benchmark's size."""
    if request.method != "GET":
        raise WebApiError(405, ODATA_ERROR, "The $metadata document is read with GET.")
    environment = web_api.environment
    padding = environment.metadata_padding_mb * 1024 * 1024
    if padding <= 0:
        return Response("".join(csdl_parts(environment.catalog)).encode(), media_type=XML_TYPE)
    chunks = (part.encode() for part in csdl_parts(environment.catalog, padding))
    return StreamingResponse(chunks, media_type=XML_TYPE)


def csdl_parts(catalog: Catalog, padding_bytes: int = 0) -> Iterator[str]:
    """The document in pieces of a few kilobytes each (an entity type, a group of declarations)."""
    written = len(_HEAD)
    yield _HEAD
    tables = list(catalog)
    for table in tables:
        part = entity_type(catalog, table)
        written += len(part)
        yield part
    for name, key in _DECLARED_ONLY.items():
        if catalog.get(name) is None:
            yield (
                f'<EntityType Name="{name}" BaseType="mscrm.crmbaseentity"><Key><PropertyRef Name="{key}"/></Key>'
                f'<Property Name="{key}" Type="Edm.Guid"/></EntityType>'
            )
    padded = 0
    while written < padding_bytes:  # ASCII throughout: characters are bytes
        part = _padding_type(padded)
        written += len(part) + len(_padding_set(padded))
        padded += 1
        yield part
    yield "".join(_complex_type(complex_type.name, complex_type.properties) for complex_type in COMPLEX_TYPES)
    for enum in ENUM_TYPES:
        members = "".join(f'<Member Name="{member}" Value="{value}"/>' for member, value in enum.members)
        yield f'<EnumType Name="{enum.name}">{members}</EnumType>'
    yield "".join(operation_declaration(operation) for operation in OPERATIONS.values())
    yield '<EntityContainer Name="System">'
    for table in tables:
        yield entity_set(catalog, table)
    for index in range(padded):
        yield _padding_set(index)
    for operation in OPERATIONS.values():
        if operation.bound_to is None:
            if operation.is_function:
                yield (
                    f'<FunctionImport Name="{operation.name}" Function="Microsoft.Dynamics.CRM.{operation.name}" '
                    'IncludeInServiceDocument="false"/>'
                )
            else:
                yield f'<ActionImport Name="{operation.name}" Action="Microsoft.Dynamics.CRM.{operation.name}"/>'
    yield "</EntityContainer>"
    yield _TAIL


def entity_type(catalog: Catalog, table: Table) -> str:
    parts = [
        f'<EntityType Name="{table.logical_name}" BaseType="mscrm.crmbaseentity">'
        f'<Key><PropertyRef Name="{table.primary_id}"/></Key>'
    ]
    parts += [_property(column) for column in table.columns.values()]
    for navigation in table.navigation.values():
        target = catalog.get(navigation.target)
        if target is None:
            continue  # a lookup to a table the sandbox does not have (team, sla, ...)
        parts.append(
            f'<NavigationProperty Name="{navigation.name}" Type="mscrm.{navigation.target}" '
            f'Nullable="false" Partner="{navigation.relationship}">'
            f'<ReferentialConstraint Property="{navigation.column.property_name}" '
            f'ReferencedProperty="{target.primary_id}"/></NavigationProperty>'
        )
    for name, related, partner in _collections(catalog, table):
        parts.append(f'<NavigationProperty Name="{name}" Type="Collection(mscrm.{related})" Partner="{partner}"/>')
    parts.append("</EntityType>")
    return "".join(parts)


def _property(column: Column) -> str:
    if column.is_multi_select:
        type_name = "Edm.String"
    elif column.attribute_type == "DateTime" and column.date_only:
        type_name = "Edm.Date"
    else:
        type_name = _EDM_TYPES[column.attribute_type]
    extra = ' Unicode="false"' if type_name == "Edm.String" else ""
    if column.attribute_type == "Money":
        extra = ' Scale="Variable"'
    return f'<Property Name="{column.property_name}" Type="{type_name}"{extra}/>'


def _collections(catalog: Catalog, table: Table) -> Iterator[tuple[str, str, str]]:
    """Collection-valued navigation properties: (name, target table, partner) of 1:N and N:N relationships."""
    for relationship in table.metadata.get("OneToManyRelationships") or ():
        if catalog.get(relationship["ReferencingEntity"]) is not None:
            yield (
                relationship["ReferencedEntityNavigationPropertyName"],
                relationship["ReferencingEntity"],
                relationship["ReferencingEntityNavigationPropertyName"],
            )
    for relationship in table.metadata.get("ManyToManyRelationships") or ():
        first, second = relationship["Entity1LogicalName"], relationship["Entity2LogicalName"]
        other = second if table.logical_name == first else first
        name = relationship["SchemaName"]
        yield name, other, name


def entity_set(catalog: Catalog, table: Table) -> str:
    bindings = []
    for navigation in table.navigation.values():
        target = catalog.get(navigation.target)
        if target is not None:
            bindings.append(f'<NavigationPropertyBinding Path="{navigation.name}" Target="{target.entity_set_name}"/>')
    for name, target_name, _ in _collections(catalog, table):
        target = catalog.get(target_name)
        if target is not None:
            bindings.append(f'<NavigationPropertyBinding Path="{name}" Target="{target.entity_set_name}"/>')
    return (
        f'<EntitySet Name="{table.entity_set_name}" EntityType="Microsoft.Dynamics.CRM.{table.logical_name}">'
        f"{''.join(bindings)}</EntitySet>"
    )


def operation_declaration(operation: Operation) -> str:
    bound = ' IsBound="true"' if operation.bound_to else ""
    parts = [f"<{operation.kind} Name={quoteattr(operation.name)}{bound}>"]
    if operation.bound_to:
        parts.append(f'<Parameter Name="entity" Type="mscrm.{operation.bound_to}" Nullable="false"/>')
    parts += [_parameter("Parameter", parameter) for parameter in operation.parameters]
    if operation.returns:
        nullable = "" if operation.return_nullable else ' Nullable="false"'
        parts.append(f'<ReturnType Type="{operation.returns}"{nullable}/>')
    parts.append(f"</{operation.kind}>")
    return "".join(parts)


def _complex_type(name: str, properties: tuple[Parameter, ...]) -> str:
    inner = "".join(_parameter("Property", prop) for prop in properties)
    return f'<ComplexType Name="{name}">{inner}</ComplexType>'


def _parameter(element: str, parameter: Parameter) -> str:
    attributes = f'Name="{parameter.name}" Type="{parameter.type}"'
    if not parameter.nullable:
        attributes += ' Nullable="false"'
    if not parameter.unicode:
        attributes += ' Unicode="false"'
    return f"<{element} {attributes}/>"


# -- padding for the large-metadata benchmark ---------------------------------------------------------------

_PADDING_COLUMNS: Final = (
    ("name", "Edm.String", ' Unicode="false"'),
    ("description", "Edm.String", ' Unicode="false"'),
    ("code", "Edm.String", ' Unicode="false"'),
    ("amount", "Edm.Decimal", ' Scale="Variable"'),
    ("quantity", "Edm.Int32", ""),
    ("ratio", "Edm.Double", ""),
    ("isactive", "Edm.Boolean", ""),
    ("duedate", "Edm.Date", ""),
    ("startedon", "Edm.DateTimeOffset", ""),
    ("category", "Edm.Int32", ""),
)


def _padding_name(index: int) -> str:
    return f"{_PADDING_PREFIX}{index:05d}"


def _padding_set(index: int) -> str:
    name = _padding_name(index)
    return f'<EntitySet Name="{name}s" EntityType="Microsoft.Dynamics.CRM.{name}"/>'


def _padding_type(index: int) -> str:
    """A custom table's type, with its own columns, audit columns and a lookup to account."""
    name = _padding_name(index)
    parts = [
        f'<EntityType Name="{name}" BaseType="mscrm.crmbaseentity"><Key><PropertyRef Name="{name}id"/></Key>'
        f'<Property Name="{name}id" Type="Edm.Guid"/>'
    ]
    for round_ in range(3):
        for column, type_name, extra in _PADDING_COLUMNS:
            parts.append(f'<Property Name="cr8a1_{column}{round_ or ""}" Type="{type_name}"{extra}/>')
    for stamp in ("createdon", "modifiedon", "overriddencreatedon"):
        parts.append(f'<Property Name="{stamp}" Type="Edm.DateTimeOffset"/>')
    for lookup in ("createdby", "modifiedby", "ownerid", "owninguser", "owningbusinessunit", "cr8a1_accountid"):
        parts.append(f'<Property Name="_{lookup}_value" Type="Edm.Guid"/>')
    parts += [
        '<Property Name="statecode" Type="Edm.Int32"/><Property Name="statuscode" Type="Edm.Int32"/>',
        '<Property Name="versionnumber" Type="Edm.Int64"/>',
        f'<NavigationProperty Name="cr8a1_AccountId" Type="mscrm.account" Nullable="false" '
        f'Partner="cr8a1_account_{name}_{index}"><ReferentialConstraint Property="_cr8a1_accountid_value" '
        'ReferencedProperty="accountid"/></NavigationProperty>',
        '<NavigationProperty Name="createdby" Type="mscrm.systemuser" Nullable="false" '
        f'Partner="lk_{name}_createdby"><ReferentialConstraint Property="_createdby_value" '
        'ReferencedProperty="systemuserid"/></NavigationProperty>',
        "</EntityType>",
    ]
    return "".join(parts)
