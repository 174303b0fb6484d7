"""The metadata endpoints: EntityDefinitions and its attributes, keys and relationships, as the Web API answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox._errors import WebApiError
from sandbox._metadata import answer_metadata
from sandbox._tables import entity_definitions

BASE = "https://contoso.crm.dynamics.com"
METADATA = f"{BASE}/api/data/v9.2/$metadata#"
ACCOUNT = "EntityDefinitions(LogicalName='account')"
CAST = f"{ACCOUNT}/Attributes/Microsoft.Dynamics.CRM."


def ask(path: str, **query: str) -> dict[str, Any]:
    return answer_metadata(path, {f"${name}": value for name, value in query.items()}, BASE)


def refused(path: str, **query: str) -> WebApiError:
    with pytest.raises(WebApiError) as raised:
        ask(path, **query)
    return raised.value


def expected_code(message: str) -> str:
    """An unknown property answers code 0x0, as the troubleshooting page shows; other OData errors 0x80060888."""
    return "0x0" if message.startswith("Could not find a property named") else "0x80060888"


def labels(option_set: dict[str, Any]) -> set[str]:
    options = [*(option_set.get("Options") or ()), option_set.get("TrueOption"), option_set.get("FalseOption")]
    return {option["Label"]["UserLocalizedLabel"]["Label"] for option in options if option}


@pytest.mark.parametrize(("table", "count"), [("account", 248), ("opportunity", 190)])
def test_real_tables_serve_every_attribute_of_their_real_metadata(table: str, count: int) -> None:
    body = ask(f"EntityDefinitions(LogicalName='{table}')", expand="Attributes")
    assert body["@odata.context"] == f"{METADATA}EntityDefinitions/$entity"
    assert len(body["Attributes"]) == count
    assert not any(name in body for name in ("Keys", "ManyToOneRelationships", "OneToManyRelationships"))
    assert all("OptionSet" not in attribute and "GlobalOptionSet" not in attribute for attribute in body["Attributes"])


def test_a_table_without_expand_has_its_properties_but_no_collections() -> None:
    body = ask(ACCOUNT)
    assert body["LogicalName"] == "account"
    assert body["MetadataId"] == "70816501-edb9-4740-a16c-6a5efbc05d84"
    assert not {"Attributes", "Keys", "ManyToOneRelationships", "ManyToManyRelationships"} & body.keys()
    listed = ask("EntityDefinitions")["value"]
    assert len(listed) == len(entity_definitions())
    assert all("Attributes" not in entity for entity in listed)


def test_select_keeps_only_the_chosen_properties_and_the_metadata_id() -> None:
    body = ask(ACCOUNT, select="LogicalName,EntitySetName")
    assert body == {
        "@odata.context": f"{METADATA}EntityDefinitions(LogicalName,EntitySetName)/$entity",
        "MetadataId": "70816501-edb9-4740-a16c-6a5efbc05d84",
        "LogicalName": "account",
        "EntitySetName": "accounts",
    }


def test_a_table_is_found_by_metadata_id_as_by_name() -> None:
    assert ask("EntityDefinitions(70816501-edb9-4740-a16c-6a5efbc05d84)", select="LogicalName")["LogicalName"] == (
        "account"
    )


@pytest.mark.parametrize(
    ("filter_text", "tables"),
    [
        ("IsCustomEntity eq true", {"cr8a1_project", "cr8a1_project_stakeholders"}),
        ("LogicalName eq 'account'", {"account"}),
        (
            "OwnershipType eq Microsoft.Dynamics.CRM.OwnershipTypes'OrganizationOwned'",
            {"product", "transactioncurrency", "entitydatasource"},
        ),
        ("LogicalName eq 'account' or LogicalName eq 'contact'", {"account", "contact"}),
        (
            "not (OwnershipType eq Microsoft.Dynamics.CRM.OwnershipTypes'UserOwned') and LogicalName ne 'product'",
            {
                "systemuser",
                "businessunit",
                "transactioncurrency",
                "entitydatasource",
                "accountleads",
                "cr8a1_project_stakeholders",
            },
        ),
        ("(ObjectTypeCode lt 3 or ObjectTypeCode gt 10000) and IsCustomEntity eq false", {"account", "contact"}),
        ("MetadataId eq 70816501-EDB9-4740-a16c-6a5efbc05d84", {"account"}),
    ],
)
def test_the_table_list_filters_like_the_service(filter_text: str, tables: set[str]) -> None:
    body = ask("EntityDefinitions", select="LogicalName", filter=filter_text)
    assert body["@odata.context"] == f"{METADATA}EntityDefinitions(LogicalName)"
    assert {entity["LogicalName"] for entity in body["value"]} == tables
    assert all(entity.keys() == {"MetadataId", "LogicalName"} for entity in body["value"])


@pytest.mark.parametrize(
    ("filter_text", "message_part"),
    [
        ("contains(LogicalName,'acc')", "function 'contains' is not supported"),
        ("startswith(LogicalName,'acc')", "function 'startswith' is not supported"),
        ("OwnershipType eq 'UserOwned'", "Microsoft.Dynamics.CRM.OwnershipTypes'<member>'"),
        ("OwnershipType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Lookup'", "OwnershipTypes"),
        ("LogicalName eq Microsoft.Dynamics.CRM.OwnershipTypes'UserOwned'", "Can't compare 'LogicalName'"),
        ("IsCustomEntity eq 'yes'", "the types differ"),
        ("ObjectTypeCode ge 1", "'ge' is not supported"),
        ("DisplayName/UserLocalizedLabel/Label eq 'Account'", "one level down"),
        ("DisplayName/LocalizedLabels eq 'Account'", "labels can't be compared"),
        ("NoSuchProperty eq 1", "Could not find a property named 'NoSuchProperty'"),
        ("LogicalName eq", "Syntax error at position 14"),
        ("(LogicalName eq 'account'", "expected ')'"),
        ("LogicalName eq 'account' account", "expected 'and', 'or' or the end"),
        ("LogicalName eq 'account' & 1", "Syntax error at position 25"),
    ],
)
def test_unsupported_or_malformed_filters_are_a_400(filter_text: str, message_part: str) -> None:
    error = refused("EntityDefinitions", select="LogicalName", filter=filter_text)
    assert (error.status, error.code) == (400, expected_code(error.message))
    assert message_part in error.message


def test_expanded_attributes_take_their_own_select_and_filter() -> None:
    picklists = "AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'"
    body = ask(
        ACCOUNT, select="LogicalName", expand=f"Attributes($select=LogicalName,AttributeType;$filter={picklists}),Keys"
    )
    assert body["@odata.context"] == (
        f"{METADATA}EntityDefinitions(LogicalName,Attributes(LogicalName,AttributeType),Keys)/$entity"
    )
    assert len(body["Attributes"]) == 20
    assert {attribute["AttributeType"] for attribute in body["Attributes"]} == {"Picklist"}
    assert body["Attributes"][0].keys() == {"@odata.type", "MetadataId", "LogicalName", "AttributeType"}
    assert [key["KeyAttributes"] for key in body["Keys"]] == [["accountnumber"]]


def test_attributes_filter_on_the_value_of_a_managed_property() -> None:
    required = "RequiredLevel/Value eq Microsoft.Dynamics.CRM.AttributeRequiredLevel'ApplicationRequired'"
    body = ask(f"{ACCOUNT}/Attributes", select="LogicalName", filter=required)
    assert body["@odata.context"] == f"{METADATA}EntityDefinitions('account')/Attributes(LogicalName)"
    assert [attribute["LogicalName"] for attribute in body["value"]] == ["name"]


def test_lookup_attributes_carry_their_targets() -> None:
    body = ask(f"{ACCOUNT}/Attributes(LogicalName='primarycontactid')")
    assert body["@odata.type"] == "#Microsoft.Dynamics.CRM.LookupAttributeMetadata"
    assert body["Targets"] == ["contact"]


def test_account_and_contact_relate_through_their_lookups() -> None:
    body = ask(
        ACCOUNT, select="LogicalName", expand="ManyToOneRelationships($select=ReferencingAttribute,ReferencedEntity)"
    )
    assert {"ReferencingAttribute": "primarycontactid", "ReferencedEntity": "contact"} in [
        {name: value for name, value in relationship.items() if name != "MetadataId"}
        for relationship in body["ManyToOneRelationships"]
    ]
    contact = ask("EntityDefinitions(LogicalName='contact')/ManyToOneRelationships")["value"]
    assert "parentcustomerid_account" in {r["ReferencingEntityNavigationPropertyName"] for r in contact}
    incoming = ask(f"{ACCOUNT}/OneToManyRelationships", filter="ReferencingEntity eq 'contact'")["value"]
    assert {r["SchemaName"] for r in incoming} == {"contact_customer_accounts"}
    many_to_many = ask(f"{ACCOUNT}/ManyToManyRelationships")["value"]
    assert [(r["SchemaName"], r["IntersectEntityName"]) for r in many_to_many] == [
        ("accountleads_association", "accountleads")
    ]


@pytest.mark.parametrize(
    ("cast", "attribute", "label"),
    [
        ("PicklistAttributeMetadata", "industrycode", "Accounting"),
        ("BooleanAttributeMetadata", "creditonhold", "Yes"),
        ("StateAttributeMetadata", "statecode", "Active"),
        ("StatusAttributeMetadata", "statuscode", "Inactive"),
    ],
)
def test_typed_casts_expand_the_option_set(cast: str, attribute: str, label: str) -> None:
    body = ask(CAST + cast, select="LogicalName", expand="OptionSet")
    assert body["@odata.context"] == (
        f"{METADATA}EntityDefinitions('account')/Attributes/Microsoft.Dynamics.CRM.{cast}(LogicalName,OptionSet)"
    )
    assert body["value"] and all(item["OptionSet"] for item in body["value"])
    assert all("@odata.type" not in item for item in body["value"])  # the cast already names their type
    found = next(item for item in body["value"] if item["LogicalName"] == attribute)
    assert label in labels(found["OptionSet"])


def test_a_cast_keeps_only_attributes_of_that_type_with_their_own_properties() -> None:
    strings = ask(CAST + "StringAttributeMetadata", select="LogicalName,MaxLength")["value"]
    assert len(strings) == 95
    name = next(attribute for attribute in strings if attribute["LogicalName"] == "name")
    assert name == {"MetadataId": name["MetadataId"], "LogicalName": "name", "MaxLength": 160}


def test_one_attribute_by_name_then_cast_then_its_option_set() -> None:
    single = ask(f"{ACCOUNT}/Attributes(LogicalName='name')", select="LogicalName,RequiredLevel")
    assert (
        single["@odata.context"]
        == f"{METADATA}EntityDefinitions('account')/Attributes(LogicalName,RequiredLevel)/$entity"
    )
    assert single["RequiredLevel"]["Value"] == "ApplicationRequired"
    typed = ask(
        f"{ACCOUNT}/Attributes(LogicalName='industrycode')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        select="LogicalName",
        expand="OptionSet($select=Options),GlobalOptionSet($select=Options)",
    )
    assert typed["@odata.context"] == (
        f"{METADATA}EntityDefinitions('account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
        "(LogicalName,OptionSet(Options),GlobalOptionSet(Options))/$entity"
    )
    assert typed["OptionSet"] == typed["GlobalOptionSet"]
    assert typed["OptionSet"].keys() == {"MetadataId", "Options"}
    options = ask(
        f"{ACCOUNT}/Attributes(LogicalName='industrycode')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata/OptionSet",
        select="Name",
    )
    assert options["@odata.context"].endswith(
        "EntityDefinitions('account')/Attributes('industrycode')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
        "/OptionSet(Name)/$entity"
    )
    assert options["Name"] == "account_industrycode"


def test_one_property_of_an_attribute() -> None:
    body = ask(f"{ACCOUNT}/Attributes(LogicalName='name')/SchemaName")
    assert body == {
        "@odata.context": f"{METADATA}EntityDefinitions('account')/Attributes('name')/SchemaName",
        "value": "Name",
    }


@pytest.mark.parametrize(
    ("path", "query", "message_part"),
    [
        (
            f"{ACCOUNT}/Attributes",
            {"select": "MaxLength"},
            "'MaxLength' on type 'Microsoft.Dynamics.CRM.AttributeMetadata'",
        ),
        (
            f"{ACCOUNT}/Attributes",
            {"expand": "OptionSet"},
            "'OptionSet' on type 'Microsoft.Dynamics.CRM.AttributeMetadata'",
        ),
        (
            "EntityDefinitions",
            {"select": "NoSuchProperty"},
            "'NoSuchProperty' on type 'Microsoft.Dynamics.CRM.EntityMetadata'",
        ),
        ("EntityDefinitions", {"expand": "Attributes($top=1)"}, "only $select and $filter"),
        (ACCOUNT, {"filter": "LogicalName eq 'account'"}, "$filter applies to collections"),
        (CAST + "Foo", {}, "neither a base type nor a sub-type"),
        ("EntityDefinitions(SchemaName='Account')", {}, "use a MetadataId or LogicalName='...'"),
        ("GlobalOptionSetDefinitions", {"filter": "Name eq 'budgetstatus'"}, "doesn't support $filter"),
    ],
)
def test_invalid_requests_are_a_400(path: str, query: dict[str, str], message_part: str) -> None:
    error = refused(path, **query)
    assert (error.status, error.code) == (400, expected_code(error.message))
    assert message_part in error.message


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        (
            "EntityDefinitions(LogicalName='nosuch')",
            "0x80040217",
            "Could not find an entity with name nosuch and id 00000000-0000-0000-0000-000000000000.",
        ),
        (
            f"{ACCOUNT}/Attributes(LogicalName='nosuch')",
            "0x80040217",
            "Could not find attribute with name 'nosuch' on entity 'account'.",
        ),
        (
            f"{ACCOUNT}/Keys(LogicalName='nosuch')",
            "0x80040217",
            "Could not find key with LogicalName 'nosuch' on entity 'account'.",
        ),
        (
            "EntityDefinitions(LogicalName='account')/Columns",
            "0x8006088a",
            "Resource not found for the segment 'Columns'.",
        ),
        ("Tables", "0x8006088a", "Resource not found for the segment 'Tables'."),
        (
            f"{ACCOUNT}/Attributes(LogicalName='name')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
            "0x8006088a",
            "Resource not found for the segment 'Microsoft.Dynamics.CRM.PicklistAttributeMetadata'.",
        ),
    ],
)
def test_what_does_not_exist_is_a_404(path: str, code: str, message: str) -> None:
    error = refused(path)
    assert (error.status, error.code, error.message) == (404, code, message)


def test_global_option_sets_and_relationships_are_found_by_name() -> None:
    budget = ask("GlobalOptionSetDefinitions(Name='budgetstatus')", select="Name,IsGlobal")
    assert budget["@odata.context"] == f"{METADATA}GlobalOptionSetDefinitions(Name,IsGlobal)/$entity"
    assert (budget["@odata.type"], budget["IsGlobal"]) == ("#Microsoft.Dynamics.CRM.OptionSetMetadata", True)
    relationship = ask("RelationshipDefinitions(SchemaName='contact_customer_accounts')", select="SchemaName")
    assert relationship["@odata.type"] == "#Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata"
    cast = "RelationshipDefinitions/Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata"
    into_contact = ask(
        cast, select="SchemaName", filter="ReferencedEntity eq 'contact' and ReferencingEntity eq 'account'"
    )
    assert [r["SchemaName"] for r in into_contact["value"]] == ["account_primary_contact"]


def test_answers_leave_the_shared_metadata_untouched() -> None:
    before = json.dumps(entity_definitions(), sort_keys=True)
    ask(ACCOUNT, expand="Attributes,Keys,ManyToOneRelationships")["Attributes"].clear()
    ask(CAST + "PicklistAttributeMetadata", expand="OptionSet")["value"][0]["OptionSet"].clear()
    assert json.dumps(entity_definitions(), sort_keys=True) == before
