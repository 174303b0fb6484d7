"""`GET [api]/$metadata` over real HTTP: the CSDL document "Web API Service Documents" describes."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx2
import pytest

from sandbox import Sandbox

from .support import api, auth, error_of

EDMX = "{http://docs.oasis-open.org/odata/ns/edmx}"
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


async def document(sandbox: Sandbox, http: httpx2.AsyncClient) -> ET.Element:
    response = await http.get(api(sandbox) + "/$metadata", headers=auth(sandbox))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    return ET.fromstring(response.content)  # noqa: S314 - the sandbox's own document


def schema_of(root: ET.Element) -> ET.Element:
    schema = root.find(f"{EDMX}DataServices/{EDM}Schema")
    assert schema is not None
    return schema


def declared(schema: ET.Element, kind: str, name: str) -> ET.Element:
    found = [element for element in schema.findall(f"{EDM}{kind}") if element.get("Name") == name]
    assert len(found) == 1, f"{kind} {name}"
    return found[0]


def parameters(operation: ET.Element) -> list[tuple[str | None, str | None, str | None]]:
    return [(p.get("Name"), p.get("Type"), p.get("Nullable")) for p in operation.findall(f"{EDM}Parameter")]


async def test_the_document_is_edmx_4_with_the_dataverse_namespace(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    root = await document(sandbox, http)
    assert root.tag == f"{EDMX}Edmx" and root.get("Version") == "4.0"
    schema = schema_of(root)
    assert (schema.get("Namespace"), schema.get("Alias")) == ("Microsoft.Dynamics.CRM", "mscrm")


async def test_a_tables_entity_type_has_its_key_columns_and_navigation(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = declared(schema_of(await document(sandbox, http)), "EntityType", "account")
    assert account.get("BaseType") == "mscrm.crmbaseentity"
    key = account.find(f"{EDM}Key/{EDM}PropertyRef")
    assert key is not None and key.get("Name") == "accountid"
    types = {p.get("Name"): p.get("Type") for p in account.findall(f"{EDM}Property")}
    assert types["accountid"] == "Edm.Guid"
    assert types["name"] == "Edm.String"
    assert types["revenue"] == "Edm.Decimal"
    assert types["numberofemployees"] == "Edm.Int32"
    assert types["_primarycontactid_value"] == "Edm.Guid"
    assert "primarycontactid" not in types
    navigation = {n.get("Name"): n for n in account.findall(f"{EDM}NavigationProperty")}
    assert navigation["primarycontactid"].get("Type") == "mscrm.contact"
    constraint = navigation["primarycontactid"].find(f"{EDM}ReferentialConstraint")
    assert constraint is not None and constraint.get("Property") == "_primarycontactid_value"
    assert navigation["contact_customer_accounts"].get("Type") == "Collection(mscrm.contact)"
    assert navigation["accountleads_association"].get("Type") == "Collection(mscrm.lead)"


async def test_every_served_table_has_an_entity_set_and_the_service_document_agrees(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    container = schema_of(await document(sandbox, http)).find(f"{EDM}EntityContainer")
    assert container is not None
    sets = {s.get("Name"): s.get("EntityType") for s in container.findall(f"{EDM}EntitySet")}
    service = (await http.get(api(sandbox) + "/", headers=auth(sandbox))).json()
    assert set(sets) == {entry["name"] for entry in service["value"]}
    assert sets["opportunitycloses"] == "Microsoft.Dynamics.CRM.opportunityclose"
    bindings = {
        b.get("Path"): b.get("Target")
        for s in container.findall(f"{EDM}EntitySet")
        if s.get("Name") == "accounts"
        for b in s.findall(f"{EDM}NavigationPropertyBinding")
    }
    assert bindings["primarycontactid"] == "contacts"


async def test_qualify_lead_is_declared_bound_to_lead_as_its_reference_page_shows(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    qualify = declared(schema_of(await document(sandbox, http)), "Action", "QualifyLead")
    assert qualify.get("IsBound") == "true"
    assert parameters(qualify) == [
        ("entity", "mscrm.lead", "false"),
        ("CreateAccount", "Edm.Boolean", "false"),
        ("CreateContact", "Edm.Boolean", "false"),
        ("CreateOpportunity", "Edm.Boolean", "false"),
        ("OpportunityCurrencyId", "mscrm.transactioncurrency", None),
        ("OpportunityCustomerId", "mscrm.crmbaseentity", None),
        ("SourceCampaignId", "mscrm.campaign", None),
        ("Status", "Edm.Int32", "false"),
        ("SuppressDuplicateDetection", "Edm.Boolean", None),
        ("ProcessInstanceId", "mscrm.crmbaseentity", None),
    ]
    returns = qualify.find(f"{EDM}ReturnType")
    assert returns is not None and returns.get("Type") == "Collection(mscrm.crmbaseentity)"


@pytest.mark.parametrize(
    ("kind", "name", "expected", "returns"),
    [
        ("Function", "WhoAmI", [], "mscrm.WhoAmIResponse"),
        ("Function", "RetrieveVersion", [], "mscrm.RetrieveVersionResponse"),
        (
            "Function",
            "RetrieveTotalRecordCount",
            [("EntityNames", "Collection(Edm.String)", "false")],
            "mscrm.RetrieveTotalRecordCountResponse",
        ),
        (
            "Function",
            "InitializeFrom",
            [
                ("EntityMoniker", "mscrm.crmbaseentity", "false"),
                ("TargetEntityName", "Edm.String", "false"),
                ("TargetFieldType", "mscrm.TargetFieldType", "false"),
            ],
            "mscrm.crmbaseentity",
        ),
        (
            "Action",
            "WinOpportunity",
            [("OpportunityClose", "mscrm.opportunityclose", "false"), ("Status", "Edm.Int32", "false")],
            None,
        ),
        (
            "Action",
            "LoseOpportunity",
            [("OpportunityClose", "mscrm.opportunityclose", "false"), ("Status", "Edm.Int32", "false")],
            None,
        ),
        (
            "Action",
            "CloseIncident",
            [("IncidentResolution", "mscrm.incidentresolution", "false"), ("Status", "Edm.Int32", "false")],
            None,
        ),
        (
            "Action",
            "cr8a1_ScoreAccounts",
            [
                ("Segment", "Edm.String", "false"),
                ("MinimumEmployees", "Edm.Int32", None),
                ("Weight", "Edm.Decimal", None),
                ("IncludeInactive", "Edm.Boolean", None),
                ("RunId", "Edm.Guid", None),
                ("Regions", "Collection(Edm.String)", None),
                ("Account", "mscrm.account", None),
            ],
            "mscrm.cr8a1_ScoreAccountsResponse",
        ),
    ],
)
async def test_unbound_operations_are_declared_and_imported(
    sandbox: Sandbox,
    http: httpx2.AsyncClient,
    kind: str,
    name: str,
    expected: list[tuple[str, str, str | None]],
    returns: str | None,
) -> None:
    schema = schema_of(await document(sandbox, http))
    operation = declared(schema, kind, name)
    assert operation.get("IsBound") is None
    assert parameters(operation) == expected
    return_type = operation.find(f"{EDM}ReturnType")
    assert (return_type.get("Type") if return_type is not None else None) == returns
    container = schema.find(f"{EDM}EntityContainer")
    assert container is not None
    imports = {i.get("Name"): i for i in container.findall(f"{EDM}{kind}Import")}
    assert imports[name].get(kind) == f"Microsoft.Dynamics.CRM.{name}"


async def test_the_types_operations_return_are_declared(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    schema = schema_of(await document(sandbox, http))
    counts = declared(schema, "ComplexType", "EntityRecordCountCollection")
    assert {p.get("Name"): p.get("Type") for p in counts.findall(f"{EDM}Property")} == {
        "Count": "Edm.Int32",
        "IsReadOnly": "Edm.Boolean",
        "Keys": "Collection(Edm.String)",
        "Values": "Collection(Edm.Int64)",
    }
    members = declared(schema, "EnumType", "TargetFieldType").findall(f"{EDM}Member")
    assert [(m.get("Name"), m.get("Value")) for m in members] == [
        ("All", "0"),
        ("ValidForCreate", "1"),
        ("ValidForUpdate", "2"),
        ("ValidForRead", "3"),
    ]


async def test_every_type_the_document_names_is_declared_in_it(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    schema = schema_of(await document(sandbox, http))
    names = {
        e.get("Name") for kind in ("EntityType", "ComplexType", "EnumType") for e in schema.findall(f"{EDM}{kind}")
    }
    used = {
        match
        for element in schema.iter()
        for attribute in ("Type", "BaseType")
        for match in re.findall(r"mscrm\.(\w+)", element.get(attribute) or "")
    }
    assert used <= names, used - names


async def test_metadata_is_read_with_get_only(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.post(api(sandbox) + "/$metadata", headers=auth(sandbox))
    assert error_of(response)[0] == 405


async def test_the_large_option_streams_a_document_of_20_megabytes(
    sandbox_template: Path, tmp_path: Path, http: httpx2.AsyncClient
) -> None:
    data = tmp_path / "large"
    shutil.copytree(sandbox_template, data)
    async with (
        Sandbox(data, metadata_padding_mb=20) as large,
        http.stream("GET", api(large) + "/$metadata", headers=auth(large)) as response,
    ):
        assert response.status_code == 200
        assert "content-length" not in response.headers  # streamed, not built in memory first
        content = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert len(content) >= 20 * 1024 * 1024
    schema = schema_of(ET.fromstring(content))  # noqa: S314 - the sandbox's own document
    assert len(schema.findall(f"{EDM}EntityType")) > 3000
    assert declared(schema, "Action", "QualifyLead").get("IsBound") == "true"
