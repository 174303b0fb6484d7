"""Actions and functions: the CSDL `$metadata` read as a stream, and operations invoked as Microsoft's pages say."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

import anyio
import httpx2
import pytest

from dataverse import (
    CsdlReader,
    DataverseClient,
    EntityReference,
    EntityValues,
    InvalidMetadata,
    InvalidParameters,
    InvalidQuery,
    ODataQuery,
    OperationCatalog,
    OperationType,
    StaticTokenProvider,
    TransportError,
    UnknownOperation,
    WriteRefused,
    check_parameters,
    parse_metadata,
)
from dataverse._operations import function_call, function_literal
from sandbox import Fault, Sandbox

from .support import instant_retries

# Declarations as Microsoft's pages show them ("Use Web API actions", "Use Web API functions", the reference).
CSDL = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
  <edmx:DataServices>
    <Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">
      <EntityType Name="crmbaseentity" Abstract="true" />
      <EntityType Name="lead" BaseType="mscrm.crmbaseentity">
        <Key><PropertyRef Name="leadid" /></Key>
        <Property Name="leadid" Type="Edm.Guid" />
        <Property Name="subject" Type="Edm.String" Unicode="false" />
        <NavigationProperty Name="parentaccountid" Type="mscrm.account" Nullable="false" />
      </EntityType>
      <EntityType Name="account" BaseType="mscrm.crmbaseentity" />
      <EntityType Name="opportunityclose" BaseType="mscrm.activitypointer" />
      <EntityType Name="activitypointer" BaseType="mscrm.crmbaseentity" />
      <EntityType Name="transactioncurrency" BaseType="mscrm.crmbaseentity" />
      <ComplexType Name="WhoAmIResponse">
        <Property Name="BusinessUnitId" Type="Edm.Guid" Nullable="false" />
      </ComplexType>
      <EnumType Name="TargetFieldType">
        <Member Name="All" Value="0" />
        <Member Name="ValidForCreate" Value="1" />
      </EnumType>
      <Function Name="WhoAmI">
        <ReturnType Type="mscrm.WhoAmIResponse" Nullable="false" />
      </Function>
      <Function Name="RetrieveTotalRecordCount">
        <Parameter Name="EntityNames" Type="Collection(Edm.String)" Nullable="false" Unicode="false" />
        <ReturnType Type="mscrm.RetrieveTotalRecordCountResponse" Nullable="false" />
      </Function>
      <Function Name="InitializeFrom">
        <Parameter Name="EntityMoniker" Type="mscrm.crmbaseentity" Nullable="false" />
        <Parameter Name="TargetEntityName" Type="Edm.String" Nullable="false" Unicode="false" />
        <Parameter Name="TargetFieldType" Type="mscrm.TargetFieldType" Nullable="false" />
        <ReturnType Type="mscrm.crmbaseentity" Nullable="false" />
      </Function>
      <Action Name="WinOpportunity">
        <Parameter Name="OpportunityClose" Type="mscrm.opportunityclose" Nullable="false" />
        <Parameter Name="Status" Type="Edm.Int32" Nullable="false" />
      </Action>
      <Action Name="QualifyLead" IsBound="true">
        <Parameter Name="entity" Type="mscrm.lead" Nullable="false" />
        <Parameter Name="CreateAccount" Type="Edm.Boolean" Nullable="false" />
        <Parameter Name="OpportunityCurrencyId" Type="mscrm.transactioncurrency" />
        <Parameter Name="Status" Type="Edm.Int32" Nullable="false" />
        <ReturnType Type="Collection(mscrm.crmbaseentity)" Nullable="false" />
      </Action>
      <Action Name="ExportTranslation" IsBound="true">
        <Parameter Name="entityset" Type="Collection(mscrm.account)" Nullable="false" />
        <Parameter Name="SolutionName" Type="Edm.String" Nullable="false" Unicode="false" />
      </Action>
      <Action Name="AddToQueue" IsBound="true">
        <Parameter Name="entity" Type="mscrm.crmbaseentity" Nullable="false" />
      </Action>
      <Action Name="AddToQueue" IsBound="true">
        <Parameter Name="entity" Type="mscrm.lead" Nullable="false" />
        <Annotation Term="Org.OData.Core.V1.Description" String="the lead's own" />
      </Action>
      <EntityContainer Name="System">
        <EntitySet Name="leads" EntityType="Microsoft.Dynamics.CRM.lead" />
        <ActionImport Name="WinOpportunity" Action="Microsoft.Dynamics.CRM.WinOpportunity" />
        <FunctionImport Name="WhoAmI" Function="Microsoft.Dynamics.CRM.WhoAmI" IncludeInServiceDocument="false" />
      </EntityContainer>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
"""


def test_the_catalog_holds_every_action_and_function_with_its_parameters() -> None:
    catalog = parse_metadata(CSDL)
    (qualify,) = catalog.named("QualifyLead")
    assert qualify.kind == "action" and qualify.table == "lead" and qualify.bound_to_row
    assert [str(parameter) for parameter in qualify.parameters] == [
        "CreateAccount: Edm.Boolean",
        "OpportunityCurrencyId: transactioncurrency (optional)",
        "Status: Edm.Int32",
    ]
    assert qualify.returns == OperationType("crmbaseentity", "entity", collection=True)
    (count,) = catalog.named("RetrieveTotalRecordCount")
    assert count.kind == "function" and count.binding is None
    assert count.parameters[0].type == OperationType("Edm.String", "primitive", collection=True)
    assert count.returns is not None and count.returns.kind == "complex"
    (initialize,) = catalog.named("InitializeFrom")
    assert [parameter.type.kind for parameter in initialize.parameters] == ["entity", "primitive", "enum"]
    assert catalog.enum_types["TargetFieldType"] == {"All": 0, "ValidForCreate": 1}
    (win,) = catalog.named("WinOpportunity")
    assert win.returns is None and win.parameters[0].type == OperationType("opportunityclose", "entity")
    assert len(catalog) == 8  # overloads count


def test_bound_operations_are_chosen_by_table_and_binding() -> None:
    catalog = parse_metadata(CSDL)
    assert catalog.choose("ExportTranslation", "account", row=False).binding == OperationType(
        "account", "entity", collection=True
    )
    # A table's own overload wins over the base type's; other tables get the base type's.
    assert catalog.choose("AddToQueue", "lead", row=True).table == "lead"
    assert catalog.choose("AddToQueue", "account", row=True).table == "crmbaseentity"
    assert catalog.choose("whoami", None, row=False).name == "WhoAmI"
    with pytest.raises(InvalidQuery, match="QualifyLead is bound to a row of lead: give table and id"):
        catalog.choose("QualifyLead", None, row=False)
    with pytest.raises(InvalidQuery, match="bound to a row of lead, not to a row of account"):
        catalog.choose("QualifyLead", "account", row=True)
    with pytest.raises(InvalidQuery, match="not bound to a table"):
        catalog.choose("WhoAmI", "account", row=True)


def test_an_unknown_operation_names_the_closest() -> None:
    with pytest.raises(
        UnknownOperation, match=r"No action or function named 'QualifyLaed'\. Did you mean 'QualifyLead'"
    ):
        parse_metadata(CSDL).named("QualifyLaed")


def test_the_document_may_arrive_in_chunks_of_any_size() -> None:
    document = CSDL.encode()
    whole = parse_metadata(document)
    for size in (1, 7, 1000):
        reader = CsdlReader()
        for start in range(0, len(document), size):
            reader.feed(document[start : start + size])
        assert reader.close() == whole


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', "DOCTYPE"),
        ("<edmx:Edmx xmlns:edmx='http://docs.oasis-open.org/odata/ns/edmx'>", "not well-formed"),
        ("<html><body>Sign in</body></html>", "not a CSDL document"),
        ("", "not well-formed"),
    ],
)
def test_a_document_that_is_not_plain_csdl_is_refused(document: str, problem: str) -> None:
    with pytest.raises(InvalidMetadata, match=problem):
        parse_metadata(document)


def test_an_entity_declared_anywhere_is_refused_before_it_is_expanded() -> None:
    laughs = '<!DOCTYPE Edmx [<!ENTITY l "lol"><!ENTITY l2 "&l;&l;&l;&l;">]>'
    document = f'{laughs}<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">&l2;</edmx:Edmx>'
    with pytest.raises(InvalidMetadata, match="DOCTYPE"):
        parse_metadata(document)


def test_parameters_are_checked_against_the_declaration_all_at_once() -> None:
    catalog = parse_metadata(CSDL)
    qualify = catalog.choose("QualifyLead", "lead", row=True)
    with pytest.raises(InvalidParameters) as raised:
        check_parameters(qualify, catalog, {"CreateAcount": True, "Status": "3", "OpportunityCurrencyId": 5})
    assert str(raised.value).startswith(
        "QualifyLead: no parameter 'CreateAcount'; CreateAccount is required; "
        "OpportunityCurrencyId expects a row of transactioncurrency; "
        'Status expects a whole number (Edm.Int32), not "3". '
        "Its parameters: CreateAccount: Edm.Boolean, OpportunityCurrencyId: transactioncurrency (optional), "
        "Status: Edm.Int32."
    )


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("Status", 2**31, "expects a whole number"),
        ("Status", True, "expects a whole number"),
        ("Status", None, "is required and may not be null"),
        (
            "OpportunityClose",
            EntityReference("account", uuid.uuid4()),
            "expects a row of opportunityclose, not of account",
        ),
    ],
)
def test_a_value_of_another_type_is_refused(name: str, value: object, problem: str) -> None:
    catalog = parse_metadata(CSDL)
    win = catalog.choose("WinOpportunity", None, row=False)
    given = {"Status": 3, "OpportunityClose": EntityValues("opportunityclose", {"subject": "Won"}), name: value}
    with pytest.raises(InvalidParameters, match=problem):
        check_parameters(win, catalog, given)


def test_function_values_travel_as_escaped_aliases() -> None:
    catalog = parse_metadata(CSDL)
    initialize = catalog.choose("InitializeFrom", None, row=False)
    lead = EntityReference("lead", uuid.UUID(int=7))
    values = check_parameters(
        initialize,
        catalog,
        {"EntityMoniker": lead, "TargetEntityName": "O'Neil&x=1#", "TargetFieldType": "validforcreate"},
    )
    literals = {
        parameter.name: function_literal(parameter.type, values[parameter.name], {lead: f"leads({lead.id})"})
        for parameter in initialize.parameters
    }
    assert literals == {
        "EntityMoniker": '{"@odata.id":"leads(00000000-0000-0000-0000-000000000007)"}',
        "TargetEntityName": "'O''Neil&x=1#'",
        "TargetFieldType": "Microsoft.Dynamics.CRM.TargetFieldType'ValidForCreate'",
    }
    call = function_call("InitializeFrom", values, literals)
    path, _, query = call.partition("?")
    assert path == "InitializeFrom(EntityMoniker=@p1,TargetEntityName=@p2,TargetFieldType=@p3)"
    assert [unquote(part.partition("=")[2]) for part in query.split("&")] == list(literals.values())
    assert "#" not in query and "'" not in query


# -- against the sandbox --------------------------------------------------------------------------------------


def client(sandbox: Sandbox, http: httpx2.AsyncClient, **options: Any) -> DataverseClient:
    return DataverseClient(http, sandbox.environments["contoso"].url, StaticTokenProvider(sandbox.token()), **options)


def sent(sandbox: Sandbox, part: str) -> list[str]:
    return [f"{record.method} {record.path}" for record in sandbox.request_log.records if part in record.path]


async def an_open(dataverse: DataverseClient, table: str) -> str:
    summary = await dataverse.resolve_table(table)
    page = await dataverse.read_page(table, ODataQuery(select=[summary.primary_id], filter="statecode eq 0", top=1))
    return str(page.rows[0][summary.primary_id])


async def test_concurrent_cold_calls_read_the_metadata_once(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    dataverse = client(sandbox, http)
    catalogs: list[OperationCatalog] = []

    async def read() -> None:
        catalogs.append(await dataverse.operations())

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(read)
    await dataverse.operations()
    assert sent(sandbox, "$metadata") == ["GET /api/data/v9.2/$metadata"]
    assert all(catalog is catalogs[0] for catalog in catalogs)
    assert catalogs[0].choose("QualifyLead", "lead", row=True).is_action


async def test_a_bound_action_and_a_function_are_sent_as_the_pages_show(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    dataverse = client(sandbox, http)
    lead = await an_open(dataverse, "lead")
    qualified = await dataverse.invoke(
        "QualifyLead",
        {"CreateAccount": True, "CreateContact": False, "CreateOpportunity": False, "Status": 3},
        table="leads",
        id=lead,
    )
    counted = await dataverse.invoke("RetrieveTotalRecordCount", {"EntityNames": ["account"]})
    assert [row["@odata.type"] for row in qualified.value["value"]] == ["#Microsoft.Dynamics.CRM.account"]
    assert counted.value["EntityRecordCountCollection"]["Keys"] == ["account"]
    assert sent(sandbox, "Microsoft.Dynamics.CRM.QualifyLead") == [
        f"POST /api/data/v9.2/leads({lead})/Microsoft.Dynamics.CRM.QualifyLead"
    ]
    assert sent(sandbox, "RetrieveTotalRecordCount") == ["GET /api/data/v9.2/RetrieveTotalRecordCount(EntityNames=@p1)"]


async def test_an_action_is_never_repeated_once_it_may_have_run(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    retry, _ = instant_retries()
    dataverse = client(sandbox, http, retry=retry)
    case = await an_open(dataverse, "incident")
    sandbox.faults.add(Fault(kind="drop_after", count=1, method="POST", path="CloseIncident"))
    resolution = EntityValues(
        "incidentresolution", {"subject": "Fixed", "incidentid@odata.bind": f"/incidents({case})"}
    )
    with pytest.raises(TransportError) as raised:
        await dataverse.invoke("CloseIncident", {"IncidentResolution": resolution, "Status": 5})
    assert raised.value.may_have_written
    assert "The action CloseIncident may or may not have run: check its effect before running it again" in str(
        raised.value
    )
    assert sent(sandbox, "CloseIncident") == ["POST /api/data/v9.2/CloseIncident"]


async def test_a_function_is_retried_like_a_read(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    retry, sleep = instant_retries()
    dataverse = client(sandbox, http, retry=retry)
    sandbox.faults.add(Fault(status=503, count=1, method="GET", path="WhoAmI"))
    assert (await dataverse.invoke("WhoAmI")).value["UserId"]
    assert len(sleep.waits) == 1 and len(sent(sandbox, "WhoAmI")) == 2


async def test_a_read_only_client_runs_functions_and_refuses_actions(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    dataverse = client(sandbox, http, read_only=True)
    assert (await dataverse.invoke("RetrieveVersion")).value["Version"]
    with pytest.raises(WriteRefused, match="read-only"):
        await dataverse.invoke("cr8a1_ScoreAccounts", {"Segment": "all"})
    assert sent(sandbox, "cr8a1_ScoreAccounts") == []


async def test_a_metadata_download_that_breaks_off_is_read_again(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    retry, _ = instant_retries()
    dataverse = client(sandbox, http, retry=retry)
    sandbox.faults.add(Fault(kind="drop_after", count=1, method="GET", path=r"\$metadata"))
    assert len(await dataverse.operations()) > 5
    assert len(sent(sandbox, "$metadata")) == 2
