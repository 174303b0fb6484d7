"""The metadata endpoints over HTTP: EntityDefinitions with the real account and opportunity metadata."""

from __future__ import annotations

from urllib.parse import quote

import httpx2
import pytest

from sandbox import Sandbox

from .support import api, auth, error_of


async def get(sandbox: Sandbox, http: httpx2.AsyncClient, path: str) -> httpx2.Response:
    return await http.get(api(sandbox) + "/" + path, headers=auth(sandbox, "alice"))


@pytest.mark.parametrize(("table", "count"), [("account", 248), ("opportunity", 190)])
async def test_real_tables_serve_their_real_attributes(
    sandbox: Sandbox, http: httpx2.AsyncClient, table: str, count: int
) -> None:
    response = await get(sandbox, http, f"EntityDefinitions(LogicalName='{table}')?$expand=Attributes")
    body = response.json()
    assert response.status_code == 200
    assert len(body["Attributes"]) == count
    assert body["@odata.context"].endswith("$metadata#EntityDefinitions/$entity")
    assert all("OptionSet" not in attribute for attribute in body["Attributes"])
    assert all(
        not attribute["@odata.type"].startswith("#Microsoft.Dynamics.CRM.Complex")
        for attribute in body["Attributes"]
        if "@odata.type" in attribute
    )


async def test_the_table_list_filters_and_selects(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    custom = await get(
        sandbox,
        http,
        "EntityDefinitions?$select=LogicalName,EntitySetName&$filter="
        + quote("IsCustomEntity eq true and IsIntersect eq false"),
    )
    assert custom.json()["value"] == [
        {
            "MetadataId": custom.json()["value"][0]["MetadataId"],
            "LogicalName": "cr8a1_project",
            "EntitySetName": "cr8a1_projects",
        }
    ]
    everything = (await get(sandbox, http, "EntityDefinitions?$select=LogicalName")).json()["value"]
    assert {"account", "contact", "lead", "opportunity", "incident", "product", "salesorder", "invoice"} <= {
        e["LogicalName"] for e in everything
    }
    assert all("Attributes" not in entity for entity in everything)


async def test_typed_casts_carry_option_sets(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    path = (
        "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
        "?$select=LogicalName&$expand=OptionSet"
    )
    body = (await get(sandbox, http, path)).json()
    industry = next(attribute for attribute in body["value"] if attribute["LogicalName"] == "industrycode")
    labels = {option["Label"]["UserLocalizedLabel"]["Label"] for option in industry["OptionSet"]["Options"]}
    assert "Accounting" in labels
    boolean = (
        await get(
            sandbox,
            http,
            "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.BooleanAttributeMetadata?$expand=OptionSet",
        )
    ).json()
    assert all("TrueOption" in attribute["OptionSet"] for attribute in boolean["value"])


async def test_attribute_filters_use_enum_literals(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    filter_text = "AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Lookup'"
    body = (
        await get(
            sandbox,
            http,
            "EntityDefinitions(LogicalName='contact')/Attributes?$select=LogicalName,AttributeType&$filter="
            + quote(filter_text),
        )
    ).json()
    assert body["value"] and {attribute["AttributeType"] for attribute in body["value"]} == {"Lookup"}


async def test_keys_and_relationships(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    body = (
        await get(
            sandbox,
            http,
            "EntityDefinitions(LogicalName='account')?$select=LogicalName&$expand=Keys,ManyToOneRelationships",
        )
    ).json()
    assert body["Keys"][0]["KeyAttributes"] == ["accountnumber"]
    contact = next(r for r in body["ManyToOneRelationships"] if r["ReferencingAttribute"] == "primarycontactid")
    assert contact["ReferencedEntity"] == "contact"
    assert contact["ReferencingEntityNavigationPropertyName"] == "primarycontactid"
    contacts = (await get(sandbox, http, "EntityDefinitions(LogicalName='contact')/ManyToOneRelationships")).json()[
        "value"
    ]
    assert "parentcustomerid_account" in {r["ReferencingEntityNavigationPropertyName"] for r in contacts}


async def test_one_attribute_by_name(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    body = (await get(sandbox, http, "EntityDefinitions(LogicalName='account')/Attributes(LogicalName='name')")).json()
    assert body["MaxLength"] == 160
    assert body["RequiredLevel"]["Value"] == "ApplicationRequired"


@pytest.mark.parametrize(
    ("path", "status", "message_part"),
    [
        ("EntityDefinitions(LogicalName='nosuch')", 404, "nosuch"),
        ("EntityDefinitions(LogicalName='account')/Attributes(LogicalName='nosuch')", 404, "nosuch"),
        ("EntityDefinitions?$select=NoSuchProperty", 400, "NoSuchProperty"),
        ("EntityDefinitions?$filter=" + quote("contains(LogicalName,'a')"), 400, "not supported"),
    ],
)
async def test_metadata_errors(
    sandbox: Sandbox, http: httpx2.AsyncClient, path: str, status: int, message_part: str
) -> None:
    actual_status, _, message = error_of(await get(sandbox, http, path))
    assert actual_status == status
    assert message_part in message
