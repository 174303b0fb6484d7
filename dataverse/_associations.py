"""Linking rows through navigation properties with `$ref` ("Associate and disassociate tables using the Web API").

    await associate(client, "account", account_id, "accountleads_association", "lead", lead_id)
        POST   accounts(<id>)/accountleads_association/$ref     {"@odata.id": "<api>/leads(<id>)"}
    await associate(client, "contact", contact_id, "parentcustomerid_account", "account", account_id)
        PUT    contacts(<id>)/parentcustomerid_account/$ref     {"@odata.id": "<api>/accounts(<id>)"}
    await disassociate(client, "account", account_id, "accountleads_association", "lead", lead_id)
        DELETE accounts(<id>)/accountleads_association(<id>)/$ref
    await disassociate(client, "contact", contact_id, "parentcustomerid_account")
        DELETE contacts(<id>)/parentcustomerid_account/$ref

Whether a navigation property is single- or collection-valued, and which table it reaches, comes from the table's
metadata (`navigations`). Every URL is built here: entity sets are the service's own, navigation property names are
checked identifiers, keys are escaped. Links are writes: a read-only client refuses them before anything is sent.
Setting or clearing a single-valued reference and removing a row from a collection are idempotent, and retried as
such; adding a row to an N:N collection twice is the duplicate-key error, so a repeat after an unclear failure that
meets that error is the earlier attempt's success, as a create's repeat meeting its own key is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from ._errors import DuplicateRecord, write_outcome
from ._metadata import TableMetadata, TableSummary
from ._odata import InvalidQuery, equals, guid, identifier, key_segment

if TYPE_CHECKING:
    from ._client import DataverseClient, RowKey

RelationshipKind = Literal["many_to_one", "one_to_many", "many_to_many"]


@dataclass(frozen=True)
class Navigation:
    """A navigation property of a table: the table it reaches, through which relationship, and how.

    `many_to_one` is single-valued (the table's own lookup `column`); `one_to_many` is collection-valued (the lookup
    `column` of the target table); `many_to_many` is collection-valued, through an intersect table. `partner` is
    the navigation property of the same relationship on the target table.
    """

    name: str
    target_table: str
    relationship: str
    kind: RelationshipKind
    column: str | None = None
    partner: str = ""

    @property
    def is_collection(self) -> bool:
        return self.kind != "many_to_one"


def navigations(table: TableMetadata) -> list[Navigation]:
    """Every navigation property of `table` that links rows, single-valued ones first."""
    found = [
        Navigation(
            r.referencing_navigation,
            r.referenced_table,
            r.schema_name,
            "many_to_one",
            r.referencing_column,
            r.referenced_navigation,
        )
        for r in table.many_to_one
        if r.referencing_navigation
    ]
    found += [
        Navigation(
            r.referenced_navigation,
            r.referencing_table,
            r.schema_name,
            "one_to_many",
            r.referencing_column,
            r.referencing_navigation,
        )
        for r in table.one_to_many
        if r.referenced_navigation
    ]
    for relationship in table.many_to_many:
        for name, other in relationship.sides(table.logical_name):
            partner = next((own for own, reached in relationship.sides(other) if reached == table.logical_name), "")
            found.append(Navigation(name, other, relationship.schema_name, "many_to_many", None, partner))
    return found


async def associate(
    client: DataverseClient, table: str, key: RowKey, navigation: str, target_table: str, target_key: RowKey
) -> None:
    """Link row `key` of `table` with row `target_key` of `target_table` through `navigation`: set a single-valued
    navigation property, or add the row to a collection-valued one (1:N or N:N)."""
    with write_outcome():
        source, link, target = await _resolve(client, table, navigation, target_table)
        url = client.transport.url(f"{_entity_path(source, key)}/{identifier(link.name, 'navigation property')}/$ref")
        reference = {"@odata.id": client.transport.url(_entity_path(target, target_key))}
    what = _link_text(source, key, target, target_key, link)
    with write_outcome(f"{what} may or may not have been made; making it again is safe."):
        try:
            await client.transport.send(
                "POST" if link.is_collection else "PUT",
                url,
                # Adding a row to an N:N collection twice is refused as a duplicate: a repeat recognises it.
                repeatability="create" if link.is_collection else "safe",
                json=reference,
            )
        except DuplicateRecord as duplicate:
            duplicate.hint = f"{what} exists already: there is nothing to do."
            raise


async def disassociate(
    client: DataverseClient,
    table: str,
    key: RowKey,
    navigation: str,
    target_table: str | None = None,
    target_key: RowKey | None = None,
) -> None:
    """Remove the link through `navigation`: clear a single-valued navigation property (the target is optional),
    or remove row `target_key` of `target_table` from a collection-valued one."""
    with write_outcome():
        source, link, target = await _resolve(client, table, navigation, target_table)
        path = f"{_entity_path(source, key)}/{identifier(link.name, 'navigation property')}"
        if link.is_collection:
            if target_key is None:
                raise InvalidQuery(f"Removing a row from {link.name} needs that row's id.")
            path += f"({_key(target_key)})"
    what = _link_text(source, key, target, target_key, link)
    with write_outcome(f"{what} may or may not have been removed; removing it again is safe."):
        await client.transport.send("DELETE", client.transport.url(f"{path}/$ref"), repeatability="safe")


async def is_associated(
    client: DataverseClient, table: str, key: RowKey, navigation: str, target_table: str, target_id: str | uuid.UUID
) -> bool:
    """Whether row `key` of `table` is linked with row `target_id` of `target_table` through `navigation`."""
    source, link, target = await _resolve(client, table, navigation, target_table)
    wanted = guid(target_id)
    if not link.is_collection:
        assert link.column is not None
        row = await client.get(source.logical_name, key, select=[f"_{identifier(link.column)}_value"])
        value = row.get(f"_{link.column}_value")
        reached = row.get(f"_{link.column}_value@Microsoft.Dynamics.CRM.lookuplogicalname", target.logical_name)
        return value is not None and str(value).lower() == str(wanted) and reached == target.logical_name
    path = f"{_entity_path(source, key)}/{identifier(link.name, 'navigation property')}"
    params = {"$select": identifier(target.primary_id), "$filter": equals(target.primary_id, wanted)}
    outcome = await client.transport.send("GET", client.transport.url(path), repeatability="safe", params=params)
    return bool(outcome.response.json().get("value"))


async def _resolve(
    client: DataverseClient, table: str, navigation: str, target_table: str | None
) -> tuple[TableSummary, Navigation, TableSummary]:
    """The table, its navigation property `navigation` and the table it reaches (which must be `target_table`)."""
    metadata = await client.table(table)
    link = next((found for found in navigations(metadata) if found.name == navigation), None)
    if link is None:
        raise InvalidQuery(f"{navigation!r} is not a navigation property of {metadata.logical_name}.")
    target = await client.resolve_table(target_table or link.target_table)
    if target.logical_name != link.target_table:
        raise InvalidQuery(
            f"{link.name} of {metadata.logical_name} reaches {link.target_table} rows, not {target.logical_name} rows."
        )
    return metadata.summary, link, target


def _entity_path(table: TableSummary, key: RowKey) -> str:
    return f"{identifier(table.entity_set_name, 'entity set')}({_key(key)})"


def _key(key: RowKey) -> str:
    return quote(key_segment(key), safe="'=,-")


def _link_text(
    source: TableSummary, key: RowKey, target: TableSummary, target_key: RowKey | None, link: Navigation
) -> str:
    """'The link between account row <id> and lead row <id> through accountleads_association', for messages."""
    row = f"{source.logical_name} row {key_segment(key)}"
    if target_key is None:
        return f"The link of {row} through {link.name}"
    return f"The link between {row} and {target.logical_name} row {key_segment(target_key)} through {link.name}"
