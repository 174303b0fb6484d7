"""Bulk operation messages bound to an entity set: `CreateMultiple`, `UpdateMultiple`, `UpsertMultiple`.

As "Use bulk operation messages" and the Web API action reference describe them:
`POST [api]/<entity set>/Microsoft.Dynamics.CRM.CreateMultiple` with `{"Targets": [...]}`, every target
carrying `"@odata.type": "Microsoft.Dynamics.CRM.<table>"`. On a standard table the whole operation is one
transaction: any error undoes every row and is the answer (the failing row's error, as a single request would
answer it). `CreateMultiple` answers 200 with `CreateMultipleResponse` (`Ids`, in the order of `Targets`);
`UpdateMultiple` and `UpsertMultiple` answer 204. A target of `UpdateMultiple` names its row by its primary key
column (as the page's example does) or by `@odata.id`; one of `UpsertMultiple` by `@odata.id` (a relative URL
with the primary key or an alternate key, as the reference shows) or its primary key column, and without
either it is created. Each row goes through the same `Environment.create`/`update` as a single request, so
security, defaults, value checks and `@odata.bind` are the same.

Which tables: the page says custom tables and "many common standard tables, but not all" support them. The
sandbox enables them on its business tables (account, contact, lead, opportunity, incident, product,
salesorder, invoice) and the custom cr8a1_project, and not on the platform tables `NOT_ENABLED` lists nor on
the intersect tables of N:N relationships (owned by no one), which are written by associating rows.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import Response

from ._associate import NOT_SUPPORTED
from ._errors import BAD_REQUEST, ODATA_ERROR, WebApiError, bad_request, resource_not_found
from ._odata import parse_key

if TYPE_CHECKING:
    from ._catalog import JsonObject, Table
    from ._environment import Environment, RowKey
    from ._security import Caller
    from ._webapi import WebApi

ACTIONS: Final = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
NOT_ENABLED: Final = frozenset({"systemuser", "businessunit", "transactioncurrency", "entitydatasource"})
_PREFIX: Final = "Microsoft.Dynamics.CRM."


async def answer_bound_action(
    web_api: WebApi, request: Request, table: Table, caller: Caller, segment: str
) -> Response:
    """An action bound to the entity set of `table`; only the bulk operation messages are emulated."""
    from ._webapi import json_response  # deferred: _webapi imports this module lazily

    name = segment.removeprefix(_PREFIX)
    if name == "DeleteMultiple":
        # "If you use DeleteMultiple on a standard table, you get the error: DeleteMultiple has not yet been
        # implemented." The sandbox has no elastic tables.
        raise WebApiError(400, BAD_REQUEST, "DeleteMultiple has not yet been implemented.")
    if name not in ACTIONS:
        raise resource_not_found(segment)
    if request.method != "POST":
        raise WebApiError(405, ODATA_ERROR, f"The action '{segment}' is invoked with POST.")
    if table.logical_name in NOT_ENABLED or table.ownership == "None":
        # The wording of the service's refusal as clients report it for a table without the message.
        raise WebApiError(
            400,
            NOT_SUPPORTED,
            f"The '{name}' method does not support entities of type '{table.logical_name}'. "
            "MessageProcessorCache returned MessageProcessor.Empty.",
        )
    targets = _targets(await web_api.body(request), table)
    environment = web_api.environment
    ids: list[str] = []
    with environment.store.transaction():  # all or nothing: each row's own write is a savepoint inside it
        for target in targets:
            if name == "CreateMultiple":
                ids.append(str(environment.create(table, target, caller, read_back=False)[table.primary_id]))
            else:
                _write(environment, table, target, caller, upsert=name == "UpsertMultiple")
    if name != "CreateMultiple":
        return Response(status_code=204)
    context = f"{environment.api_url}/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
    return json_response(200, {"@odata.context": context, "Ids": ids})


def _targets(body: Any, table: Table) -> list[JsonObject]:
    """The `Targets` parameter: entities of the bound table, each typed with `@odata.type`."""
    targets = body.get("Targets") if isinstance(body, dict) else None
    if not isinstance(targets, list) or not all(isinstance(target, dict) for target in targets):
        raise bad_request("The action needs the parameter 'Targets': a JSON array of entities.")
    if not targets:
        raise WebApiError(400, BAD_REQUEST, "The 'Targets' parameter holds no entities: send at least one.")
    expected = f"{_PREFIX}{table.logical_name}"
    for index, target in enumerate(targets):
        declared = target.get("@odata.type")
        if declared is None:
            # "You must set the @odata.type property for each item in the Targets parameter."
            raise bad_request(
                f"The entity at position {index} of 'Targets' has no '@odata.type': set it to '{expected}'."
            )
        if str(declared).removeprefix("#") != expected:
            raise WebApiError(
                400,
                BAD_REQUEST,
                f"The entity at position {index} of 'Targets' is of type '{declared}', but every entity must be "
                f"of the table the action is bound to, '{expected}'.",
            )
    return targets


def _write(environment: Environment, table: Table, target: JsonObject, caller: Caller, *, upsert: bool) -> None:
    """Update the row a target names; with `upsert`, create it when missing (or when it names none)."""
    key = _key(environment, table, target)
    fields = {name: value for name, value in target.items() if name != table.primary_id}
    if key is None:
        if not upsert:
            raise WebApiError(400, BAD_REQUEST, "Entity Id must be specified for Update")
        environment.create(table, target, caller)
        return
    existing = environment.find(table, key) if upsert else environment.require(table, key)
    if existing is None:
        environment.create(table, fields, caller, key)
    else:
        environment.update(table, existing, fields, caller)


def _key(environment: Environment, table: Table, target: JsonObject) -> RowKey | None:
    """The row a target names: its `@odata.id` (`accounts(<id>)`, `accounts(accountnumber='A-1')`) or primary key."""
    reference = target.get("@odata.id")
    if isinstance(reference, str):
        path = reference.split("/api/data/", 1)[-1].split("/", 1)[-1] if "://" in reference else reference
        entity_set, _, key_text = path.lstrip("/").removesuffix(")").partition("(")
        if entity_set != table.entity_set_name or not key_text:
            raise bad_request(
                f"The @odata.id '{reference}' is not a row of '{table.entity_set_name}', such as "
                f"'{table.entity_set_name}(<id>)' or '{table.entity_set_name}(<key>=<value>)'."
            )
        return parse_key(key_text)
    primary = target.get(table.primary_id)
    if primary is None:
        return None
    try:
        return uuid.UUID(str(primary))
    except ValueError:
        raise bad_request(f"The value '{primary}' of '{table.primary_id}' is not a GUID.") from None
