"""Actions and functions: their declarations (what `$metadata` publishes) and how a call is answered.

As "Use Web API actions" and "Use Web API functions" describe them:
    unbound action     POST [api]/WinOpportunity                     parameters in a JSON body
    bound action       POST [api]/leads(<id>)/Microsoft.Dynamics.CRM.QualifyLead
    unbound function   GET  [api]/RetrieveTotalRecordCount(EntityNames=@p1)?@p1=["account"]
A bound operation is named with its namespace and its first parameter (`entity`) is the row of the URL; an
unbound one is named without it. Each declaration is copied from the operation's reference page (names, types,
`Nullable`), and the parameters a caller sends are checked against it before anything runs: an unknown name, a
missing non-nullable value or a value of the wrong type is refused, and nothing is written.

A call answers 204 when the operation returns nothing, else 200 with the return value under
`$metadata#Microsoft.Dynamics.CRM.<ComplexType>` (or `#Collection(...)`), as the pages' examples show.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from . import _business as business
from ._catalog import JsonObject, Table
from ._errors import BAD_REQUEST, ODATA_ERROR, WebApiError, bad_request, resource_not_found
from ._parameters import Unparsable, url_arguments

if TYPE_CHECKING:
    from ._environment import Environment, RowKey
    from ._security import Caller
    from ._webapi import WebApi

NAMESPACE: Final = "Microsoft.Dynamics.CRM."
_INT32: Final = (-(2**31), 2**31 - 1)
_GUID: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Parameter:
    """A parameter of an operation, or a property of a complex type: CSDL's `Name`, `Type`, `Nullable`."""

    name: str
    type: str  # Edm.Int32, mscrm.lead, Collection(Edm.String)
    nullable: bool = True
    unicode: bool = True  # Unicode="false" on the service's string parameters


# What an operation does: (environment, caller, bound table and row or None, checked arguments) -> return value.
Runner = Callable[["Environment", "Caller", "tuple[Table, JsonObject] | None", dict[str, Any]], JsonObject | None]


@dataclass(frozen=True)
class Operation:
    """One action or function as the CSDL declares it, and what runs when it is called."""

    name: str
    is_function: bool
    parameters: tuple[Parameter, ...]
    returns: str | None
    run: Runner | None  # None: answered by the Web API itself (WhoAmI, RetrieveVersion)
    bound_to: str | None = None  # the table of the binding parameter `entity`
    return_nullable: bool = False

    @property
    def kind(self) -> str:
        return "Function" if self.is_function else "Action"


@dataclass(frozen=True)
class ComplexType:
    name: str
    properties: tuple[Parameter, ...]


@dataclass(frozen=True)
class EnumType:
    name: str
    members: tuple[tuple[str, int], ...]


def _required(name: str, type_name: str, unicode: bool = True) -> Parameter:
    return Parameter(name, type_name, nullable=False, unicode=unicode)


COMPLEX_TYPES: Final = (
    # "Use Web API functions" (Unbound functions) shows WhoAmIResponse.
    ComplexType(
        "WhoAmIResponse",
        tuple(_required(name, "Edm.Guid") for name in ("BusinessUnitId", "UserId", "OrganizationId")),
    ),
    ComplexType("RetrieveVersionResponse", (Parameter("Version", "Edm.String", unicode=False),)),
    # webapi/reference/entityrecordcountcollection and retrievetotalrecordcountresponse.
    ComplexType(
        "EntityRecordCountCollection",
        (
            Parameter("Count", "Edm.Int32"),
            Parameter("IsReadOnly", "Edm.Boolean"),
            Parameter("Keys", "Collection(Edm.String)", nullable=False, unicode=False),
            Parameter("Values", "Collection(Edm.Int64)", nullable=False),
        ),
    ),
    ComplexType(
        "RetrieveTotalRecordCountResponse",
        (Parameter("EntityRecordCountCollection", "mscrm.EntityRecordCountCollection"),),
    ),
    # The custom API's response properties become a complex type named after it ("Create and use Custom APIs").
    ComplexType(
        "cr8a1_ScoreAccountsResponse",
        (
            _required("Score", "Edm.Decimal"),
            _required("ScoredAccounts", "Edm.Int32"),
            Parameter("Summary", "Edm.String", unicode=False),
            Parameter("RunId", "Edm.Guid"),
        ),
    ),
)
# webapi/reference/targetfieldtype (InitializeFrom's TargetFieldType).
ENUM_TYPES: Final = (
    EnumType("TargetFieldType", (("All", 0), ("ValidForCreate", 1), ("ValidForUpdate", 2), ("ValidForRead", 3))),
)
_ENUM_MEMBERS: Final = {f"mscrm.{enum.name}": dict(enum.members) for enum in ENUM_TYPES}

OPERATIONS: Final[Mapping[str, Operation]] = {
    operation.name: operation
    for operation in (
        Operation("WhoAmI", True, (), "mscrm.WhoAmIResponse", None),
        Operation("RetrieveVersion", True, (), "mscrm.RetrieveVersionResponse", None),
        Operation(
            "RetrieveTotalRecordCount",
            True,
            (_required("EntityNames", "Collection(Edm.String)", unicode=False),),
            "mscrm.RetrieveTotalRecordCountResponse",
            business.retrieve_total_record_count,
        ),
        Operation(
            "InitializeFrom",
            True,
            (
                _required("EntityMoniker", "mscrm.crmbaseentity"),
                _required("TargetEntityName", "Edm.String", unicode=False),
                _required("TargetFieldType", "mscrm.TargetFieldType"),
            ),
            "mscrm.crmbaseentity",
            business.initialize_from,
        ),
        Operation(
            "QualifyLead",
            False,
            (
                _required("CreateAccount", "Edm.Boolean"),
                _required("CreateContact", "Edm.Boolean"),
                _required("CreateOpportunity", "Edm.Boolean"),
                Parameter("OpportunityCurrencyId", "mscrm.transactioncurrency"),
                Parameter("OpportunityCustomerId", "mscrm.crmbaseentity"),
                Parameter("SourceCampaignId", "mscrm.campaign"),
                _required("Status", "Edm.Int32"),
                Parameter("SuppressDuplicateDetection", "Edm.Boolean"),
                Parameter("ProcessInstanceId", "mscrm.crmbaseentity"),
            ),
            "Collection(mscrm.crmbaseentity)",
            business.qualify_lead,
            bound_to="lead",
        ),
        Operation(
            "WinOpportunity",
            False,
            (_required("OpportunityClose", "mscrm.opportunityclose"), _required("Status", "Edm.Int32")),
            None,
            business.win_opportunity,
        ),
        Operation(
            "LoseOpportunity",
            False,
            (_required("OpportunityClose", "mscrm.opportunityclose"), _required("Status", "Edm.Int32")),
            None,
            business.lose_opportunity,
        ),
        Operation(
            "CloseIncident",
            False,
            (_required("IncidentResolution", "mscrm.incidentresolution"), _required("Status", "Edm.Int32")),
            None,
            business.close_incident,
        ),
        Operation(
            "cr8a1_ScoreAccounts",
            False,
            (
                _required("Segment", "Edm.String", unicode=False),
                Parameter("MinimumEmployees", "Edm.Int32"),
                Parameter("Weight", "Edm.Decimal"),
                Parameter("IncludeInactive", "Edm.Boolean"),
                Parameter("RunId", "Edm.Guid"),
                Parameter("Regions", "Collection(Edm.String)", unicode=False),
                Parameter("Account", "mscrm.account"),
            ),
            "mscrm.cr8a1_ScoreAccountsResponse",
            business.score_accounts,
        ),
    )
}


async def answer_unbound(
    web_api: WebApi, request: Request, caller: Caller, name: str, arguments: str | None, rest: list[str]
) -> Response:
    """`[api]/<Action>` or `[api]/<Function>(...)`; anything else by that name is not a resource."""
    operation = OPERATIONS.get(name)
    if operation is None or operation.bound_to is not None or operation.run is None or rest:
        raise resource_not_found(name)
    return await _invoke(web_api, request, caller, operation, None, arguments)


async def answer_bound(
    web_api: WebApi, request: Request, caller: Caller, table: Table, key: RowKey, segment: str
) -> Response:
    """`[api]/<set>(<id>)/Microsoft.Dynamics.CRM.<Operation>`, the row being the binding parameter."""
    name, _, arguments = segment.removeprefix(NAMESPACE).partition("(")
    operation = OPERATIONS.get(name)
    if operation is None or operation.bound_to != table.logical_name or operation.run is None:
        raise resource_not_found(segment)
    row = web_api.environment.require(table, key)
    return await _invoke(web_api, request, caller, operation, (table, row), arguments.removesuffix(")") or None)


def refuse_unqualified(segment: str) -> None:
    """A bound operation named without its namespace: "Use Web API actions" (Bound actions) names the answer."""
    if segment.split("(", 1)[0] in OPERATIONS:
        raise WebApiError(400, ODATA_ERROR, "Request message has unresolved parameters.")


async def _invoke(
    web_api: WebApi,
    request: Request,
    caller: Caller,
    operation: Operation,
    target: tuple[Table, JsonObject] | None,
    arguments: str | None,
) -> Response:
    from ._webapi import json_response  # deferred: _webapi imports this module lazily

    expected = "GET" if operation.is_function else "POST"
    if request.method != expected:
        raise WebApiError(405, ODATA_ERROR, f"The requested resource does not support http method '{request.method}'.")
    if operation.is_function:
        query = dict(parse_qsl(request.url.query, keep_blank_values=True))
        try:
            given = url_arguments(arguments, query)
        except Unparsable as error:
            raise bad_request(f"Syntax error: the literal '{error}' is not a valid OData value.") from None
    else:
        if arguments and arguments.strip():
            raise resource_not_found(f"{operation.name}({arguments})")
        given = _body_parameters(await request.body())
    checked = check_arguments(operation, given)
    assert operation.run is not None
    environment = web_api.environment
    with environment.store.transaction():  # all or nothing, as the service runs one message
        body = operation.run(environment, caller, target, checked)
    if body is None:
        return Response(status_code=204)
    context = body.pop("@odata.context", None) or _context(environment.api_url, operation.returns or "")
    return json_response(200, {"@odata.context": context, **body})


def _context(api_url: str, returns: str) -> str:
    qualified = returns.replace("mscrm.", NAMESPACE)
    return f"{api_url}/$metadata#{qualified}"


def _body_parameters(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The parameters of an action are a JSON object, one property per parameter.")
    return {name: value for name, value in body.items() if not name.startswith("@")}


def check_arguments(operation: Operation, given: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments converted to their declared types; the service's refusal otherwise."""
    declared = {parameter.name: parameter for parameter in operation.parameters}
    for name in given:
        if name not in declared:
            # The OData reader's refusal, as github.com/Azure/LogicAppsUX/issues/2512 shows the service quoting it.
            where = "URL" if operation.is_function else "request payload"
            raise bad_request(
                f"The parameter '{name}' in the {where} is not a valid parameter for the operation '{operation.name}'."
            )
    checked: dict[str, Any] = {}
    for parameter in operation.parameters:
        value = given.get(parameter.name)
        if value is None:
            if not parameter.nullable:
                raise WebApiError(
                    400, BAD_REQUEST, f"Required field '{parameter.name}' is missing for '{operation.name}'."
                )
            checked[parameter.name] = None
            continue
        checked[parameter.name] = convert(parameter.type, value)
    return checked


def convert(type_name: str, value: Any) -> Any:
    """`value` (JSON) as a value of the declared type; 400 when it is not one."""
    if type_name.startswith("Collection("):
        if not isinstance(value, list):
            raise _cannot_convert(type_name, value)
        return [convert(type_name[len("Collection(") : -1], item) for item in value]
    if type_name in _ENUM_MEMBERS:
        members = _ENUM_MEMBERS[type_name]
        if isinstance(value, str) and value in members:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value in members.values():
            return next(name for name, number in members.items() if number == value)
        raise bad_request(f"The value '{value}' is not a member of the enumeration '{type_name[6:]}'.")
    if type_name.startswith("mscrm."):
        return _entity_value(type_name[len("mscrm.") :], value)
    valid = {
        "Edm.Boolean": isinstance(value, bool),
        "Edm.Int32": isinstance(value, int) and not isinstance(value, bool) and _INT32[0] <= value <= _INT32[1],
        "Edm.Int64": isinstance(value, int) and not isinstance(value, bool),
        "Edm.Decimal": isinstance(value, int | float) and not isinstance(value, bool),
        "Edm.Double": isinstance(value, int | float) and not isinstance(value, bool),
        "Edm.String": isinstance(value, str),
        "Edm.Guid": isinstance(value, str) and bool(_GUID.match(value)),
    }.get(type_name, False)
    if not valid:
        raise _cannot_convert(type_name, value)
    return str(uuid.UUID(value)) if type_name == "Edm.Guid" else value


def _cannot_convert(type_name: str, value: Any) -> WebApiError:
    # The OData reader's message for a value of the wrong type.
    shown = json.dumps(value) if not isinstance(value, str) else value
    return bad_request(f"Cannot convert the literal '{shown}' to the expected type '{type_name}'.")


def _entity_value(type_name: str, value: Any) -> JsonObject:
    """An entity parameter: a JSON object, typed by `@odata.type` where the declared type does not say."""
    if not isinstance(value, dict):
        raise bad_request(f"A value of type 'Microsoft.Dynamics.CRM.{type_name}' must be a JSON object.")
    declared = str(value.get("@odata.type", "")).removeprefix("#").removeprefix(NAMESPACE)
    if type_name == "crmbaseentity":
        if not declared and "@odata.id" not in value:
            # "Use Web API actions" (Specify entity parameter type) gives this answer for an untyped entity.
            raise bad_request("EdmEntityObject passed should have the key property value set.")
        return dict(value)
    if declared and declared != type_name:
        raise bad_request(
            f"The entity of type 'Microsoft.Dynamics.CRM.{declared}' is not the parameter's type "
            f"'Microsoft.Dynamics.CRM.{type_name}'."
        )
    return {**value, "@odata.type": f"{NAMESPACE}{type_name}"}
