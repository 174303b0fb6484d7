"""What the business operations do to the data, as their reference pages describe it.

Each runs inside the one transaction `_operations.py` opens, so a failure leaves no row changed. Rows are created
through `Environment.create`, so the caller's privileges, the platform's defaults and the value checks are those
of a plain create; the state changes the platform itself makes (a lead qualified, an opportunity won) are written
directly, after an access check on the row, as the message takes Write on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ._catalog import JsonObject, Table
from ._errors import BAD_REQUEST, WebApiError, bad_request, not_found
from ._expression import format_datetime
from ._query import RowQuery, select_rows
from ._records import Annotations, NameLookup, json_value, render_row
from ._store import StoredRow, StoredValue

if TYPE_CHECKING:
    from ._environment import Environment
    from ._security import Caller

NAMESPACE: Final = "Microsoft.Dynamics.CRM."
INVALID_STATUS: Final = "0x80048408"  # InvalidStateCodeStatusCode ("State code or status code is invalid.")
NO_ENTITY: Final = "0x80041102"  # QueryBuilderNoEntity

# The service copies a lead's values as its relationships' attribute maps say (lead to account, contact and
# opportunity: "MSDyn365 Internals: QualifyLead", markcarrington.dev); these are the default maps' pairs for the
# columns the sandbox's tables have.
LEAD_TO_ACCOUNT: Final = {
    "companyname": "name",
    "emailaddress1": "emailaddress1",
    "telephone1": "telephone1",
    "description": "description",
}
LEAD_TO_CONTACT: Final = {
    "firstname": "firstname",
    "lastname": "lastname",
    "emailaddress1": "emailaddress1",
    "telephone1": "telephone1",
    "description": "description",
}
LEAD_TO_OPPORTUNITY: Final = {"subject": "name", "description": "description", "estimatedamount": "estimatedvalue"}
# InitializeFrom maps a source row to a new one the same way (a lookup becomes an @odata.bind); account to
# account is the example of "Create a table row using the Web API" (Create a new record from another record):
# parent account, currency and address.
_ADDRESS: Final = {name: name for name in ("address1_line1", "address1_city", "address1_country")}
_INITIALIZE: Final[Mapping[tuple[str, str], tuple[Mapping[str, str], str | None]]] = {
    ("account", "account"): ({**_ADDRESS, "transactioncurrencyid": "transactioncurrencyid"}, "parentaccountid"),
    ("account", "contact"): (
        {"telephone1": "telephone1", "address1_city": "address1_city"},
        "parentcustomerid_account",
    ),
    ("account", "opportunity"): ({}, "parentaccountid"),
    ("lead", "account"): (LEAD_TO_ACCOUNT, "originatingleadid"),
    ("lead", "contact"): (LEAD_TO_CONTACT, "originatingleadid"),
    ("lead", "opportunity"): (LEAD_TO_OPPORTUNITY, "originatingleadid"),
}

Target = tuple[Table, JsonObject] | None


# -- functions ---------------------------------------------------------------------------------------------


def retrieve_total_record_count(
    environment: Environment, caller: Caller, target: Target, arguments: dict[str, Any]
) -> JsonObject:
    """The number of rows of each table: the service's snapshot (within 24 hours), here counted now, all rows."""
    keys: list[str] = []
    values: list[int] = []
    for name in arguments["EntityNames"]:
        table = _table(environment, name)
        keys.append(table.logical_name)
        values.append(environment.store.count(table))
    return {"EntityRecordCountCollection": {"Count": len(keys), "IsReadOnly": False, "Keys": keys, "Values": values}}


def initialize_from(environment: Environment, caller: Caller, target: Target, arguments: dict[str, Any]) -> JsonObject:
    """A new row's values mapped from an existing row, not saved: the caller creates it with them."""
    source_table, source = reference(environment, caller, arguments["EntityMoniker"], "EntityMoniker")
    target_table = _table(environment, arguments["TargetEntityName"])
    mapping = _INITIALIZE.get((source_table.logical_name, target_table.logical_name))
    if mapping is None:
        raise WebApiError(
            400,
            BAD_REQUEST,
            f"There is no mapping from '{source_table.logical_name}' to '{target_table.logical_name}' to "
            "initialize a row from.",
        )
    columns, navigation = mapping
    body: JsonObject = {"@odata.type": f"#{NAMESPACE}{target_table.logical_name}"}
    for source_name, target_name in columns.items():
        value = source.get(source_name)
        if value is None or not _wanted(target_table, target_name, arguments["TargetFieldType"]):
            continue
        column = source_table.columns[source_name]
        if column.is_lookup:
            related = _table(environment, column.targets[0])
            body[f"{target_name}@odata.bind"] = f"{related.entity_set_name}({value})"
        else:
            body[target_name] = _json(source_table, source_name, value)
    if navigation:
        source_id = source[source_table.primary_id]
        body[f"{navigation}@odata.bind"] = f"{source_table.entity_set_name}({source_id})"
    return {"@odata.context": f"{environment.api_url}/$metadata#{target_table.entity_set_name}/$entity", **body}


# -- sales and service -------------------------------------------------------------------------------------


def qualify_lead(environment: Environment, caller: Caller, target: Target, arguments: dict[str, Any]) -> JsonObject:
    """Create the account, contact and opportunity asked for from the lead, and close the lead as qualified."""
    assert target is not None
    lead_table, lead = target
    caller.require_access(lead_table, lead, "Write")
    lead_id = str(lead["leadid"])
    if lead.get("statecode") != 0:
        # troubleshoot/dynamics-365/sales/troubleshoot-lead-qualification-issues-for-salespeople
        raise WebApiError(
            400, BAD_REQUEST, "The lead is closed and you can't convert or qualify a lead that is already closed."
        )
    status = _status(lead_table, arguments["Status"], 1, "LeadState.Qualified", lead_id)
    currency = arguments["OpportunityCurrencyId"]
    customer = arguments["OpportunityCustomerId"]
    for name in ("SourceCampaignId", "ProcessInstanceId"):
        if arguments[name] is not None:
            reference(environment, caller, arguments[name], name)
    created: list[tuple[Table, StoredRow]] = []
    origin = f"/leads({lead_id})"
    account = contact = opportunity = None
    if arguments["CreateAccount"]:
        account = _create_from(environment, caller, "account", lead, LEAD_TO_ACCOUNT, {"originatingleadid": origin})
        created.append(account)
    if arguments["CreateContact"]:
        binds = {"originatingleadid": origin}
        if account:
            # QualifyLeadRequest (Notes for callers): the created account becomes the contact's parent customer
            # and the contact the account's primary contact.
            binds["parentcustomerid_account"] = f"/accounts({account[1]['accountid']})"
        contact = _create_from(environment, caller, "contact", lead, LEAD_TO_CONTACT, binds)
        created.append(contact)
        if account:
            _set(environment, caller, *account, {"primarycontactid": contact[1]["contactid"]})
    if arguments["CreateOpportunity"]:
        binds = {"originatingleadid": origin}
        if customer is not None:
            customer_table, customer_row = reference(environment, caller, customer, "OpportunityCustomerId")
            if customer_table.logical_name not in ("account", "contact"):
                raise bad_request("The OpportunityCustomerId must be an account or a contact.")
            key = f"customerid_{customer_table.logical_name}"
            binds[key] = f"/{customer_table.entity_set_name}({customer_row[customer_table.primary_id]})"
        elif account or contact:
            table, row = account or contact  # type: ignore[misc]
            binds[f"customerid_{table.logical_name}"] = f"/{table.entity_set_name}({row[table.primary_id]})"
        if currency is not None:
            currency_table, currency_row = reference(environment, caller, currency, "OpportunityCurrencyId")
            binds["transactioncurrencyid"] = f"/transactioncurrencies({currency_row[currency_table.primary_id]})"
        opportunity = _create_from(environment, caller, "opportunity", lead, LEAD_TO_OPPORTUNITY, binds)
        created.append(opportunity)
    changes: StoredRow = {"statecode": 1, "statuscode": status}
    if account:
        changes["parentaccountid"] = str(account[1]["accountid"])
    if contact:
        changes["parentcontactid"] = str(contact[1]["contactid"])
    if opportunity:
        changes["qualifyingopportunityid"] = str(opportunity[1]["opportunityid"])
    _set(environment, caller, lead_table, lead, changes)
    names = _names(environment)
    value = [
        {"@odata.type": f"#{table.type_name}", **render_row(table, row, None, Annotations(), names)}
        for table, row in created
    ]
    return {"@odata.context": f"{environment.api_url}/$metadata#Collection({NAMESPACE}crmbaseentity)", "value": value}


def win_opportunity(environment: Environment, caller: Caller, target: Target, arguments: dict[str, Any]) -> None:
    """Close the opportunity as won and record the event as an opportunityclose ("Use Web API actions")."""
    _close_opportunity(environment, caller, arguments, won=True)


def lose_opportunity(environment: Environment, caller: Caller, target: Target, arguments: dict[str, Any]) -> None:
    """Close the opportunity as lost, with an opportunityclose (webapi/reference/loseopportunity)."""
    _close_opportunity(environment, caller, arguments, won=False)


def _close_opportunity(environment: Environment, caller: Caller, arguments: dict[str, Any], *, won: bool) -> None:
    close = dict(arguments["OpportunityClose"])
    table, row = _bound_row(environment, close, "opportunityid", "OpportunityClose")
    caller.require_access(table, row, "Write")
    row_id = str(row["opportunityid"])
    if row.get("statecode") != 0:
        raise WebApiError(400, BAD_REQUEST, f"The opportunity with Id = {row_id} is already closed.")
    state, state_name = (1, "OpportunityState.Won") if won else (2, "OpportunityState.Lost")
    status = _status(table, arguments["Status"], state, state_name, row_id)
    _, stored = _create_activity(environment, caller, "opportunityclose", close)
    today = environment.clock().date().isoformat()
    changes: StoredRow = {"statecode": state, "statuscode": status, "actualclosedate": today}
    revenue = stored.get("actualrevenue")
    if revenue is not None:  # the close's actual revenue becomes the opportunity's actual value
        changes["actualvalue"] = revenue
        if "actualvalue" in table.money_with_base:
            changes["actualvalue_base"] = revenue
    _set(environment, caller, table, row, changes)


def close_incident(environment: Environment, caller: Caller, target: Target, arguments: dict[str, Any]) -> None:
    """Resolve the case and record an incidentresolution (webapi/reference/closeincident)."""
    resolution = dict(arguments["IncidentResolution"])
    table, row = _bound_row(environment, resolution, "incidentid", "IncidentResolution")
    caller.require_access(table, row, "Write")
    row_id = str(row["incidentid"])
    if row.get("statecode") != 0:
        # The platform's IncidentIsAlreadyClosedOrCancelled message (Dynamics CRM SDK, ErrorCodes).
        raise WebApiError(400, BAD_REQUEST, "Already Closed or Canceled")
    status = _status(table, arguments["Status"], 1, "IncidentState.Resolved", row_id)
    _create_activity(environment, caller, "incidentresolution", resolution)
    _set(environment, caller, table, row, {"statecode": 1, "statuscode": status})


# -- the custom API ----------------------------------------------------------------------------------------


def score_accounts(environment: Environment, caller: Caller, target: Target, arguments: dict[str, Any]) -> JsonObject:
    """`cr8a1_ScoreAccounts`: the weighted number of accounts the caller can read that match the parameters."""
    table = _table(environment, "account")
    if arguments["Account"] is not None:
        _, account = reference(environment, caller, arguments["Account"], "Account")
        rows = [account]
    else:
        rows = select_rows(environment.store, RowQuery(table), caller)
    minimum = arguments["MinimumEmployees"] or 0
    regions = {region.casefold() for region in arguments["Regions"] or []}
    matching = [
        row
        for row in rows
        if (arguments["IncludeInactive"] or row.get("statecode") == 0)
        and int(row.get("numberofemployees") or 0) >= minimum
        and (not regions or str(row.get("address1_country") or "").casefold() in regions)
    ]
    weight = arguments["Weight"] if arguments["Weight"] is not None else 1
    return {
        "Score": round(float(weight) * len(matching), 2),
        "ScoredAccounts": len(matching),
        "Summary": f"{arguments['Segment']}: {len(matching)} of {len(rows)} accounts",
        "RunId": arguments["RunId"] or str(uuid.uuid4()),
    }


# -- helpers -----------------------------------------------------------------------------------------------


def reference(environment: Environment, caller: Caller, value: JsonObject, parameter: str) -> tuple[Table, StoredRow]:
    """The row an entity parameter names: `{"@odata.id": "accounts(<id>)"}` or typed with its primary key."""
    if isinstance(value.get("@odata.id"), str):
        table, row_id = environment.resolve_bind(value["@odata.id"])
    else:
        table = _table(environment, str(value.get("@odata.type", "")).removeprefix("#").removeprefix(NAMESPACE))
        key = value.get(table.primary_id)
        if key is None:
            # "Use Web API actions" (Specify entity parameter type).
            raise bad_request("EdmEntityObject passed should have the key property value set.")
        try:
            row_id = str(uuid.UUID(str(key)))
        except ValueError:
            raise bad_request(f"The value '{key}' of '{table.primary_id}' in '{parameter}' is not a GUID.") from None
    row = environment.store.get(table, row_id)
    if row is None:
        raise not_found(table.logical_name, row_id)
    caller.require_access(table, row, "Read")
    return table, row


def _table(environment: Environment, logical_name: str) -> Table:
    table = environment.catalog.get(logical_name)
    if table is None:
        raise WebApiError(
            404,
            NO_ENTITY,
            f"The entity with a name = '{logical_name}' with namemapping = 'Logical' was not found in the "
            "MetadataCache.",
        )
    return table


def _bound_row(environment: Environment, body: JsonObject, navigation: str, parameter: str) -> tuple[Table, StoredRow]:
    """The row a close activity is about: its `<navigation>@odata.bind`, which the page says must be set."""
    bind = body.get(f"{navigation}@odata.bind")
    if not isinstance(bind, str):
        raise bad_request(f"The '{parameter}' parameter must be related to its record with '{navigation}@odata.bind'.")
    table, row_id = environment.resolve_bind(bind)
    row = environment.store.get(table, row_id)
    assert row is not None  # resolve_bind found it
    return table, row


def _status(table: Table, status: int, state: int, state_name: str, row_id: str) -> int:
    """The status reason for the closing state; -1 picks its default (CloseIncidentRequest.Status remarks)."""
    options = [option for option in table.columns["statuscode"].options if option.state == state]
    if status == -1:
        return options[0].value
    if status not in {option.value for option in options}:
        raise WebApiError(
            400,
            INVALID_STATUS,
            f"{status} is not a valid status code for state code {state_name} on {table.logical_name} "
            f"with Id {row_id}.",
        )
    return status


def _create_from(
    environment: Environment,
    caller: Caller,
    logical_name: str,
    lead: StoredRow,
    mapping: Mapping[str, str],
    binds: Mapping[str, str],
) -> tuple[Table, StoredRow]:
    table = _table(environment, logical_name)
    lead_table = _table(environment, "lead")
    body: JsonObject = {
        target: _json(lead_table, source, lead[source])
        for source, target in mapping.items()
        if lead.get(source) is not None
    }
    body.update({f"{navigation}@odata.bind": url for navigation, url in binds.items()})
    return table, environment.create(table, body, caller)


def _create_activity(
    environment: Environment, caller: Caller, logical_name: str, body: JsonObject
) -> tuple[Table, StoredRow]:
    """The close activity, completed as the platform completes it."""
    table = _table(environment, logical_name)
    body = {name: value for name, value in body.items() if name != "@odata.type"}
    body.setdefault("statecode", 1)
    body.setdefault("statuscode", 2)
    return table, environment.create(table, body, caller)


def _set(environment: Environment, caller: Caller, table: Table, row: StoredRow, changes: StoredRow) -> None:
    """A change the platform makes itself (state, links it maintains): stamped and versioned as any write."""
    stamped: dict[str, StoredValue] = {
        **changes,
        "modifiedon": format_datetime(environment.clock()),
        "modifiedby": caller.system_user_id,
        "versionnumber": environment.store.next_version(),
    }
    environment.store.update(table, str(row[table.primary_id]), stamped)
    row.update(stamped)


def _json(table: Table, column: str, value: StoredValue) -> Any:
    return json_value(table.columns[column], value)


def _wanted(table: Table, column_name: str, field_type: str) -> bool:
    column = table.columns.get(column_name)
    if column is None:
        return False
    return {"ValidForCreate": column.is_valid_for_create, "ValidForUpdate": column.is_valid_for_update}.get(
        field_type, True
    )


def _names(environment: Environment) -> NameLookup:
    return environment.primary_name
