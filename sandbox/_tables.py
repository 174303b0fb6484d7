"""The sandbox's schema: real `account` and `opportunity` metadata, plus declared tables, as EntityDefinitions JSON.

`account` and `opportunity` are metadata captured from a live environment (see `_reference/`); the capture left
many flags null, so they are filled with what the real service reports. The other tables are declared here
compactly and expanded into the same JSON shape. Relationships and alternate keys are derived or declared,
since the capture holds none.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any, Final

from ._catalog import Catalog, JsonObject, table_from_metadata
from ._search_index import SEARCH_INDEX

_NAMESPACE: Final = uuid.UUID("5b0c1c2e-8f3e-4a8e-9d5a-0d7f3f6a2b11")
LANGUAGE_CODE: Final = 1033
LOOKUP_TYPES: Final = ("Lookup", "Customer", "Owner")

# Columns the platform maintains: readable, never written by a caller.
_SYSTEM_MANAGED: Final = frozenset(
    {
        "createdon",
        "modifiedon",
        "createdby",
        "modifiedby",
        "createdonbehalfby",
        "modifiedonbehalfby",
        "createdbyexternalparty",
        "modifiedbyexternalparty",
        "versionnumber",
        "owningbusinessunit",
        "owninguser",
        "owningteam",
        "exchangerate",
        "address1_composite",
        "address2_composite",
        "opendeals",
        "opendeals_date",
        "opendeals_state",
        "openrevenue",
        "openrevenue_date",
        "openrevenue_state",
        "aging30",
        "aging60",
        "aging90",
        "merged",
        "masterid",
        "entityimageid",
        "onholdtime",
        "lastonholdtime",
        "teamsfollowed",
        "timespentbymeonemailandmeetings",
        "address1_addressid",
        "address2_addressid",
        "ticketnumber",
    }
)
_CREATE_ONLY: Final = frozenset({"overriddencreatedon", "importsequencenumber"})

# What the live service reports for columns whose capture left MaxLength null.
_STRING_LENGTHS: Final = {
    "name": 160,
    "accountnumber": 20,
    "emailaddress1": 100,
    "emailaddress2": 100,
    "emailaddress3": 100,
    "emailaddress": 100,
    "websiteurl": 200,
    "ftpsiteurl": 200,
    "tickersymbol": 10,
    "sic": 20,
    "yominame": 160,
    "stockexchange": 20,
    "traversedpath": 1250,
    "stepname": 200,
    "address1_line1": 250,
    "address2_line1": 250,
    "address1_postalcode": 20,
    "address2_postalcode": 20,
}
_OBJECT_TYPE_CODES: Final = {"account": 1, "opportunity": 3}


def metadata_id(*parts: str) -> str:
    """A stable MetadataId, so metadata is identical across runs and machines."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def label(text: str, *parts: str) -> JsonObject:
    localized = {
        "Label": text,
        "LanguageCode": LANGUAGE_CODE,
        "IsManaged": True,
        "MetadataId": metadata_id("label", *parts),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def _required(level: str) -> JsonObject:
    return {
        "Value": level,
        "CanBeChanged": level != "SystemRequired",
        "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
    }


# -- declared columns -------------------------------------------------------------------------------------


def column(
    table: str,
    name: str,
    attribute_type: str,
    display: str,
    *,
    required: str = "None",
    custom: bool = False,
    **extra: Any,
) -> JsonObject:
    """One attribute in EntityDefinitions shape; `extra` adds type-specific properties."""
    odata_type = {
        "Uniqueidentifier": "UniqueIdentifierAttributeMetadata",
        "Customer": "LookupAttributeMetadata",
        "Owner": "LookupAttributeMetadata",
        "State": "StateAttributeMetadata",
        "Status": "StatusAttributeMetadata",
    }.get(attribute_type, f"{attribute_type}AttributeMetadata")
    attribute: JsonObject = {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{odata_type}",
        "LogicalName": name,
        "SchemaName": name if not custom else _custom_schema_name(name),
        "AttributeType": attribute_type,
        "AttributeTypeName": {"Value": f"{attribute_type}Type"},
        "AttributeOf": None,
        "EntityLogicalName": table,
        "DisplayName": label(display, table, name),
        "Description": label(display, table, name, "description"),
        "RequiredLevel": _required(required),
        "IsCustomAttribute": custom,
        "MetadataId": metadata_id(table, name),
    }
    attribute.update(extra)
    return attribute


def _custom_schema_name(name: str) -> str:
    prefix, _, rest = name.partition("_")
    if rest.endswith("id"):
        rest = rest[:-2] + "Id"
    return f"{prefix}_{rest[:1].upper()}{rest[1:]}"


def string(table: str, name: str, display: str, max_length: int = 100, **kwargs: Any) -> JsonObject:
    return column(table, name, "String", display, MaxLength=max_length, Format="Text", **kwargs)


def memo(table: str, name: str, display: str, max_length: int = 2000, **kwargs: Any) -> JsonObject:
    return column(table, name, "Memo", display, MaxLength=max_length, Format="TextArea", **kwargs)


def integer(
    table: str, name: str, display: str, low: int = -2147483648, high: int = 2147483647, **kwargs: Any
) -> JsonObject:
    return column(table, name, "Integer", display, MinValue=low, MaxValue=high, Format="None", **kwargs)


def money(table: str, name: str, display: str, **kwargs: Any) -> JsonObject:
    return column(
        table,
        name,
        "Money",
        display,
        MinValue=-922337203685477.0,
        MaxValue=922337203685477.0,
        Precision=2,
        PrecisionSource=2,
        **kwargs,
    )


def decimal(
    table: str,
    name: str,
    display: str,
    low: float = -100000000000.0,
    high: float = 100000000000.0,
    **kwargs: Any,
) -> JsonObject:
    return column(table, name, "Decimal", display, MinValue=low, MaxValue=high, Precision=2, **kwargs)


def boolean(table: str, name: str, display: str, yes: str = "Yes", no: str = "No", **kwargs: Any) -> JsonObject:
    option_set = {
        "Name": f"{table}_{name}",
        "OptionSetType": "Boolean",
        "IsGlobal": False,
        "TrueOption": {"Value": 1, "Label": label(yes, table, name, "1")},
        "FalseOption": {"Value": 0, "Label": label(no, table, name, "0")},
    }
    return column(table, name, "Boolean", display, OptionSet=option_set, DefaultValue=False, **kwargs)


def date(table: str, name: str, display: str, *, date_only: bool = False, **kwargs: Any) -> JsonObject:
    behavior = "DateOnly" if date_only else "UserLocal"
    return column(
        table,
        name,
        "DateTime",
        display,
        Format="DateOnly" if date_only else "DateAndTime",
        DateTimeBehavior={"Value": behavior},
        **kwargs,
    )


def choice(
    table: str,
    name: str,
    display: str,
    options: Sequence[tuple[int, str]],
    attribute_type: str = "Picklist",
    states: Sequence[int] | None = None,
    **kwargs: Any,
) -> JsonObject:
    option_type = {"State": "StateOptionMetadata", "Status": "StatusOptionMetadata"}.get(attribute_type)
    rendered = []
    for index, (value, text) in enumerate(options):
        option: JsonObject = {"Value": value, "Label": label(text, table, name, str(value))}
        if option_type:
            option["@odata.type"] = f"#Microsoft.Dynamics.CRM.{option_type}"
        if attribute_type == "Status" and states is not None:
            option["State"] = states[index]
        if attribute_type == "State":
            option["DefaultStatus"] = value + 1
        rendered.append(option)
    option_set = {
        "Name": f"{table}_{name}",
        "OptionSetType": attribute_type,
        "IsGlobal": False,
        "IsCustomOptionSet": kwargs.get("custom", False),
        "Options": rendered,
    }
    return column(table, name, attribute_type, display, OptionSet=option_set, **kwargs)


def lookup(table: str, name: str, display: str, targets: Sequence[str], **kwargs: Any) -> JsonObject:
    attribute_type = kwargs.pop("attribute_type", "Lookup")
    return column(table, name, attribute_type, display, Targets=list(targets), Format="None", **kwargs)


def system_columns(
    table: str, primary_id: str, *, user_owned: bool, states: JsonObject, statuses: JsonObject
) -> list[JsonObject]:
    """The columns every table has: id, audit stamps, owner, state and row version."""
    columns = [
        column(table, primary_id, "Uniqueidentifier", table.title(), required="SystemRequired"),
        date(table, "createdon", "Created On"),
        date(table, "modifiedon", "Modified On"),
        lookup(table, "createdby", "Created By", ["systemuser"]),
        lookup(table, "modifiedby", "Modified By", ["systemuser"]),
        column(table, "versionnumber", "BigInt", "Version Number", MinValue=-9223372036854775808),
        date(table, "overriddencreatedon", "Record Created On", date_only=True),
        states,
        statuses,
    ]
    if user_owned:
        columns += [
            lookup(
                table,
                "ownerid",
                "Owner",
                ["systemuser", "team"],
                attribute_type="Owner",
                required="SystemRequired",
            ),
            lookup(table, "owninguser", "Owning User", ["systemuser"]),
            lookup(table, "owningbusinessunit", "Owning Business Unit", ["businessunit"]),
        ]
    return columns


def active_inactive(table: str) -> tuple[JsonObject, JsonObject]:
    states = choice(table, "statecode", "Status", [(0, "Active"), (1, "Inactive")], "State", required="SystemRequired")
    statuses = choice(table, "statuscode", "Status Reason", [(1, "Active"), (2, "Inactive")], "Status", states=[0, 1])
    return states, statuses


def entity(
    logical_name: str,
    *,
    entity_set: str,
    display: str,
    plural: str,
    object_type_code: int,
    primary_name: str,
    columns: list[JsonObject],
    ownership: str = "UserOwned",
    custom: bool = False,
    keys: Sequence[tuple[str, str, Sequence[str]]] = (),
    states: tuple[JsonObject, JsonObject] | None = None,
) -> JsonObject:
    """A declared table in EntityDefinitions shape, system columns included."""
    primary_id = f"{logical_name}id"
    state, status = states or active_inactive(logical_name)
    attributes = system_columns(
        logical_name, primary_id, user_owned=ownership == "UserOwned", states=state, statuses=status
    )
    attributes += columns
    if any(attribute["AttributeType"] == "Money" for attribute in columns):
        attributes.append(lookup(logical_name, "transactioncurrencyid", "Currency", ["transactioncurrency"]))
    schema_name = _custom_schema_name(logical_name) if custom else logical_name.title()
    return {
        "LogicalName": logical_name,
        "SchemaName": schema_name,
        "EntitySetName": entity_set,
        "LogicalCollectionName": entity_set,
        "CollectionSchemaName": schema_name + "s",
        "DisplayName": label(display, logical_name),
        "DisplayCollectionName": label(plural, logical_name, "plural"),
        "Description": label(f"{display} records.", logical_name, "description"),
        "ObjectTypeCode": object_type_code,
        "OwnershipType": ownership,
        "PrimaryIdAttribute": primary_id,
        "PrimaryNameAttribute": primary_name,
        "IsCustomEntity": custom,
        "MetadataId": metadata_id(logical_name),
        "Attributes": attributes,
        "Keys": [
            {
                "LogicalName": key_name,
                "SchemaName": key_name,
                "DisplayName": label(key_display, logical_name, key_name),
                "KeyAttributes": list(key_columns),
                "EntityKeyIndexStatus": "Active",
                "EntityLogicalName": logical_name,
                "MetadataId": metadata_id(logical_name, "key", key_name),
            }
            for key_name, key_display, key_columns in keys
        ],
    }


# -- the real tables ---------------------------------------------------------------------------------------


def _reference_entity(file_name: str) -> JsonObject:
    text = resources.files(__package__).joinpath("_reference", file_name).read_text(encoding="utf-8")
    entity_metadata: JsonObject = json.loads(text)["EntityMetadata"][0]
    return entity_metadata


def _fill_attribute(table: str, primary_id: str, primary_name: str, attribute: JsonObject) -> None:
    """Give a captured attribute the flags the live EntityDefinitions endpoint reports."""
    name = attribute["LogicalName"]
    odata_type = attribute.get("@odata.type")
    if odata_type:
        attribute["@odata.type"] = odata_type.replace(".Complex", ".")
    elif attribute["AttributeType"] == "Uniqueidentifier":
        attribute["@odata.type"] = "#Microsoft.Dynamics.CRM.UniqueIdentifierAttributeMetadata"
    derived = bool(attribute.get("AttributeOf")) or (
        attribute["AttributeType"] == "Virtual" and "MultiSelect" not in (odata_type or "")
    )
    system = name in _SYSTEM_MANAGED or name.endswith("_base")
    attribute["EntityLogicalName"] = table
    attribute["IsPrimaryId"] = name == primary_id
    attribute["IsPrimaryName"] = name == primary_name
    attribute["IsValidODataAttribute"] = not derived
    attribute["IsValidForRead"] = True
    attribute["IsValidForCreate"] = not (derived or system)
    attribute["IsValidForUpdate"] = not (derived or system or name in _CREATE_ONLY or name == primary_id)
    attribute["IsCustomAttribute"] = bool(attribute["SchemaName"][:1].islower() and "_" in attribute["SchemaName"])
    attribute_type = attribute["AttributeType"]
    if attribute_type in ("String", "Memo") and attribute.get("MaxLength") is None:
        attribute["MaxLength"] = _STRING_LENGTHS.get(name, 100 if attribute_type == "String" else 2000)
    if attribute_type == "Money":
        attribute.update(MinValue=-922337203685477.0, MaxValue=922337203685477.0, Precision=2, PrecisionSource=2)
    elif attribute_type == "Integer":
        low, high = (0, 1000000000) if name == "numberofemployees" else (-2147483648, 2147483647)
        attribute.update(MinValue=attribute.get("MinValue") or low, MaxValue=attribute.get("MaxValue") or high)
    elif attribute_type == "Double":
        limit = 90.0 if name.endswith("latitude") else 180.0 if name.endswith("longitude") else 1000000000.0
        attribute.update(MinValue=-limit, MaxValue=limit, Precision=5)
    elif attribute_type == "Decimal":
        attribute.update(MinValue=0.0000000001 if name == "exchangerate" else 0.0, MaxValue=100000000000.0)
        attribute.setdefault("Precision", 10 if name == "exchangerate" else 2)
    elif attribute_type == "DateTime" and attribute.get("Format") is None:
        attribute["Format"] = "DateOnly" if name.endswith("date") and name != "createdon" else "DateAndTime"
    if name in ("statecode", "ownerid", primary_id):
        attribute["RequiredLevel"] = _required("SystemRequired")


def _reference_table(file_name: str, *, primary_name: str, display: str, plural: str) -> JsonObject:
    entity_metadata = _reference_entity(file_name)
    logical_name = entity_metadata["LogicalName"]
    primary_id = f"{logical_name}id"
    for attribute in entity_metadata["Attributes"]:
        _fill_attribute(logical_name, primary_id, primary_name, attribute)
    entity_metadata.update(
        PrimaryIdAttribute=primary_id,
        PrimaryNameAttribute=primary_name,
        ObjectTypeCode=_OBJECT_TYPE_CODES[logical_name],
        OwnershipType="UserOwned",
        DisplayName=label(display, logical_name),
        DisplayCollectionName=label(plural, logical_name, "plural"),
        Description=label(f"{display} records.", logical_name, "description"),
        LogicalCollectionName=entity_metadata["EntitySetName"],
        CollectionSchemaName=entity_metadata["SchemaName"] + "s",
        IsCustomEntity=False,
        IsActivity=False,
        IsIntersect=False,
        IsPrivate=False,
        TableType="Standard",
        ChangeTrackingEnabled=True,
    )
    return entity_metadata


# -- declared tables ---------------------------------------------------------------------------------------


def _declared_tables() -> list[JsonObject]:
    contact, lead, case, product, order, invoice = (
        "contact",
        "lead",
        "incident",
        "product",
        "salesorder",
        "invoice",
    )
    project = "cr8a1_project"
    return [
        entity(
            contact,
            entity_set="contacts",
            display="Contact",
            plural="Contacts",
            object_type_code=2,
            primary_name="fullname",
            keys=[("contact_email_key", "Email", ["emailaddress1"])],
            columns=[
                string(contact, "fullname", "Full Name", 160),
                string(contact, "firstname", "First Name", 50, required="Recommended"),
                string(contact, "lastname", "Last Name", 50, required="ApplicationRequired"),
                string(contact, "jobtitle", "Job Title", 100),
                string(contact, "emailaddress1", "Email", 100),
                string(contact, "telephone1", "Business Phone", 50),
                string(contact, "mobilephone", "Mobile Phone", 50),
                string(contact, "address1_city", "Address 1: City", 80),
                string(contact, "address1_country", "Address 1: Country/Region", 80),
                lookup(
                    contact,
                    "parentcustomerid",
                    "Company Name",
                    ["account", "contact"],
                    attribute_type="Customer",
                ),
                lookup(contact, "originatingleadid", "Originating Lead", ["lead"]),
                date(contact, "birthdate", "Birthday", date_only=True),
                choice(contact, "gendercode", "Gender", [(1, "Male"), (2, "Female")]),
                choice(
                    contact,
                    "preferredcontactmethodcode",
                    "Preferred Method of Contact",
                    [(1, "Any"), (2, "Email"), (3, "Phone"), (4, "Fax"), (5, "Mail")],
                ),
                boolean(contact, "donotemail", "Do not allow Emails", "Do Not Allow", "Allow"),
                money(contact, "creditlimit", "Credit Limit"),
                integer(contact, "numberofchildren", "No. of Children", 0, 1000000000),
                memo(contact, "description", "Description"),
            ],
        ),
        entity(
            lead,
            entity_set="leads",
            display="Lead",
            plural="Leads",
            object_type_code=4,
            primary_name="fullname",
            keys=[("lead_company_email_key", "Company and email", ["companyname", "emailaddress1"])],
            states=(
                choice(lead, "statecode", "Status", [(0, "Open"), (1, "Qualified"), (2, "Disqualified")], "State"),
                choice(
                    lead,
                    "statuscode",
                    "Status Reason",
                    [
                        (1, "New"),
                        (2, "Contacted"),
                        (3, "Qualified"),
                        (4, "Lost"),
                        (5, "Cannot Contact"),
                        (6, "No Longer Interested"),
                        (7, "Canceled"),
                    ],
                    "Status",
                    states=[0, 0, 1, 2, 2, 2, 2],
                ),
            ),
            columns=[
                string(lead, "subject", "Topic", 300, required="ApplicationRequired"),
                string(lead, "fullname", "Name", 160),
                string(lead, "firstname", "First Name", 50),
                string(lead, "lastname", "Last Name", 50, required="ApplicationRequired"),
                string(lead, "companyname", "Company Name", 100),
                string(lead, "emailaddress1", "Email", 100),
                string(lead, "telephone1", "Business Phone", 50),
                choice(
                    lead,
                    "leadsourcecode",
                    "Lead Source",
                    [
                        (1, "Advertisement"),
                        (2, "Employee Referral"),
                        (3, "External Referral"),
                        (4, "Partner"),
                        (5, "Public Relations"),
                        (6, "Seminar"),
                        (7, "Trade Show"),
                        (8, "Web"),
                        (9, "Word of Mouth"),
                        (10, "Other"),
                    ],
                ),
                choice(lead, "leadqualitycode", "Rating", [(1, "Hot"), (2, "Warm"), (3, "Cold")]),
                money(lead, "estimatedamount", "Est. Value"),
                lookup(lead, "parentaccountid", "Parent Account for lead", ["account"]),
                lookup(lead, "parentcontactid", "Parent Contact for lead", ["contact"]),
                lookup(lead, "qualifyingopportunityid", "Qualifying Opportunity", ["opportunity"]),
                memo(lead, "description", "Description"),
            ],
        ),
        entity(
            case,
            entity_set="incidents",
            display="Case",
            plural="Cases",
            object_type_code=112,
            primary_name="title",
            keys=[("incident_ticketnumber_key", "Case Number", ["ticketnumber"])],
            states=(
                choice(case, "statecode", "Status", [(0, "Active"), (1, "Resolved"), (2, "Cancelled")], "State"),
                choice(
                    case,
                    "statuscode",
                    "Status Reason",
                    [
                        (1, "In Progress"),
                        (2, "On Hold"),
                        (3, "Waiting for Details"),
                        (4, "Researching"),
                        (5, "Problem Solved"),
                        (1000, "Information Provided"),
                        (6, "Cancelled"),
                        (2000, "Merged"),
                    ],
                    "Status",
                    states=[0, 0, 0, 0, 1, 1, 2, 2],
                ),
            ),
            columns=[
                string(case, "title", "Case Title", 200, required="ApplicationRequired"),
                string(case, "ticketnumber", "Case Number", 100),
                lookup(
                    case,
                    "customerid",
                    "Customer",
                    ["account", "contact"],
                    attribute_type="Customer",
                    required="SystemRequired",
                ),
                choice(case, "prioritycode", "Priority", [(1, "High"), (2, "Normal"), (3, "Low")]),
                choice(
                    case,
                    "caseorigincode",
                    "Origin",
                    [(1, "Phone"), (2, "Email"), (3, "Web"), (2483, "Facebook")],
                ),
                choice(case, "casetypecode", "Case Type", [(1, "Question"), (2, "Problem"), (3, "Request")]),
                memo(case, "description", "Description"),
            ],
        ),
        entity(
            product,
            entity_set="products",
            display="Product",
            plural="Products",
            object_type_code=1024,
            primary_name="name",
            ownership="OrganizationOwned",
            keys=[("product_productnumber_key", "Product ID", ["productnumber"])],
            states=(
                choice(
                    product,
                    "statecode",
                    "Status",
                    [(0, "Active"), (1, "Retired"), (2, "Draft"), (3, "Under Revision")],
                    "State",
                ),
                choice(
                    product,
                    "statuscode",
                    "Status Reason",
                    [(1, "Active"), (2, "Retired"), (0, "Draft"), (3, "Under Revision")],
                    "Status",
                    states=[0, 1, 2, 3],
                ),
            ),
            columns=[
                string(product, "name", "Name", 100, required="SystemRequired"),
                string(product, "productnumber", "Product ID", 100, required="SystemRequired"),
                money(product, "price", "List Price"),
                money(product, "standardcost", "Standard Cost"),
                decimal(product, "quantityonhand", "Quantity On Hand", 0, 1000000000),
                memo(product, "description", "Description"),
            ],
        ),
        entity(
            order,
            entity_set="salesorders",
            display="Order",
            plural="Orders",
            object_type_code=1088,
            primary_name="name",
            keys=[("salesorder_ordernumber_key", "Order ID", ["ordernumber"])],
            states=(
                choice(
                    order,
                    "statecode",
                    "Status",
                    [(0, "Active"), (1, "Submitted"), (2, "Canceled"), (3, "Fulfilled"), (4, "Invoiced")],
                    "State",
                ),
                choice(
                    order,
                    "statuscode",
                    "Status Reason",
                    [(1, "New"), (2, "Pending"), (3, "In Progress"), (4, "No Money"), (100001, "Complete")],
                    "Status",
                    states=[0, 0, 1, 2, 3],
                ),
            ),
            columns=[
                string(order, "name", "Name", 300, required="ApplicationRequired"),
                string(order, "ordernumber", "Order ID", 100),
                lookup(order, "customerid", "Customer", ["account", "contact"], attribute_type="Customer"),
                lookup(order, "opportunityid", "Opportunity", ["opportunity"]),
                money(order, "totalamount", "Total Amount"),
                date(order, "requestdeliveryby", "Requested Delivery Date", date_only=True),
                memo(order, "description", "Description"),
            ],
        ),
        entity(
            invoice,
            entity_set="invoices",
            display="Invoice",
            plural="Invoices",
            object_type_code=1090,
            primary_name="name",
            keys=[("invoice_invoicenumber_key", "Invoice ID", ["invoicenumber"])],
            states=(
                choice(invoice, "statecode", "Status", [(0, "Active"), (2, "Paid"), (3, "Canceled")], "State"),
                choice(
                    invoice,
                    "statuscode",
                    "Status Reason",
                    [(1, "New"), (4, "Billed"), (100001, "Complete"), (100003, "Canceled")],
                    "Status",
                    states=[0, 0, 2, 3],
                ),
            ),
            columns=[
                string(invoice, "name", "Name", 300, required="ApplicationRequired"),
                string(invoice, "invoicenumber", "Invoice ID", 100),
                lookup(invoice, "customerid", "Customer", ["account", "contact"], attribute_type="Customer"),
                lookup(invoice, "salesorderid", "Order", ["salesorder"]),
                money(invoice, "totalamount", "Total Amount"),
                date(invoice, "duedate", "Due Date", date_only=True),
            ],
        ),
        entity(
            "systemuser",
            entity_set="systemusers",
            display="User",
            plural="Users",
            object_type_code=8,
            primary_name="fullname",
            ownership="BusinessOwned",
            keys=[("systemuser_aadobjectid_key", "Entra object ID", ["azureactivedirectoryobjectid"])],
            columns=[
                string("systemuser", "fullname", "Full Name", 200),
                string("systemuser", "domainname", "User Name", 1024, required="SystemRequired"),
                string("systemuser", "internalemailaddress", "Primary Email", 100),
                string("systemuser", "title", "Title", 128),
                column("systemuser", "azureactivedirectoryobjectid", "Uniqueidentifier", "Entra ID Object ID"),
                lookup(
                    "systemuser",
                    "businessunitid",
                    "Business Unit",
                    ["businessunit"],
                    required="SystemRequired",
                ),
                boolean("systemuser", "isdisabled", "Status", "Disabled", "Enabled"),
            ],
        ),
        entity(
            "businessunit",
            entity_set="businessunits",
            display="Business Unit",
            plural="Business Units",
            object_type_code=10,
            primary_name="name",
            ownership="BusinessOwned",
            columns=[string("businessunit", "name", "Name", 160, required="SystemRequired")],
        ),
        entity(
            "transactioncurrency",
            entity_set="transactioncurrencies",
            display="Currency",
            plural="Currencies",
            object_type_code=9105,
            primary_name="currencyname",
            ownership="OrganizationOwned",
            columns=[
                string("transactioncurrency", "currencyname", "Currency Name", 100, required="SystemRequired"),
                string("transactioncurrency", "isocurrencycode", "Currency Code", 5, required="SystemRequired"),
                string("transactioncurrency", "currencysymbol", "Currency Symbol", 10, required="SystemRequired"),
                decimal("transactioncurrency", "exchangerate", "Exchange Rate", 0.0000000001, 100000000000.0),
            ],
        ),
        entity(
            project,
            entity_set="cr8a1_projects",
            display="Project",
            plural="Projects",
            object_type_code=10231,
            primary_name="cr8a1_name",
            custom=True,
            keys=[("cr8a1_projectcode", "Project code", ["cr8a1_code"])],
            columns=[
                string(project, "cr8a1_name", "Name", 200, required="ApplicationRequired", custom=True),
                string(project, "cr8a1_code", "Project Code", 20, custom=True),
                lookup(project, "cr8a1_accountid", "Client", ["account"], custom=True),
                money(project, "cr8a1_budget", "Budget", custom=True),
                date(project, "cr8a1_startdate", "Start Date", date_only=True, custom=True),
                choice(
                    project,
                    "cr8a1_phase",
                    "Phase",
                    [
                        (100000000, "Discovery"),
                        (100000001, "Build"),
                        (100000002, "Rollout"),
                        (100000003, "Closed"),
                    ],
                    custom=True,
                ),
                boolean(project, "cr8a1_ishighpriority", "High Priority", custom=True),
                decimal(project, "cr8a1_completion", "Completion (%)", 0, 100, custom=True),
                integer(project, "cr8a1_headcount", "Headcount", 0, 10000, custom=True),
                memo(project, "cr8a1_notes", "Notes", 4000, custom=True),
            ],
        ),
    ]


_DECLARED_DEFAULTS: Final = {"IsActivity": False, "IsIntersect": False, "IsPrivate": False, "TableType": "Standard"}
_ATTRIBUTE_DEFAULTS: Final = {
    "IsValidForRead": True,
    "IsValidODataAttribute": True,
    "IsPrimaryName": False,
    "IsPrimaryId": False,
}
_KNOWN_RELATIONSHIPS: Final = {
    ("account", "primarycontactid"): "account_primary_contact",
    ("account", "parentaccountid"): "account_parent_account",
    ("account", "originatingleadid"): "account_originating_lead",
    ("contact", "parentcustomerid", "account"): "contact_customer_accounts",
    ("contact", "parentcustomerid", "contact"): "contact_customer_contacts",
    ("opportunity", "parentaccountid"): "opportunity_parent_account",
    ("opportunity", "parentcontactid"): "opportunity_parent_contact",
    ("opportunity", "customerid", "account"): "opportunity_customer_accounts",
    ("opportunity", "customerid", "contact"): "opportunity_customer_contacts",
    ("incident", "customerid", "account"): "incident_customer_accounts",
    ("incident", "customerid", "contact"): "incident_customer_contacts",
    ("lead", "parentaccountid"): "account_originating_leads",
    ("contact", "originatingleadid"): "contact_originating_lead",
    ("opportunity", "originatingleadid"): "opportunity_originating_lead",
    ("lead", "qualifyingopportunityid"): "lead_qualifying_opportunity",
    ("opportunityclose", "opportunityid"): "Opportunity_OpportunityClose",
    ("incidentresolution", "incidentid"): "Incident_IncidentResolutions",
}
# Many-to-many relationships: (schema name, intersect table, its entity set, its primary key, its object type code,
# (first table, its column in the intersect table), (second table, its column)). `accountleads_association` is the
# service's own (entity reference: account, accountleads); the custom one is named as a maker names one, with the
# publisher's prefix. Both navigation properties of an N:N relationship carry its name ("Web API types and
# operations", collection-valued navigation properties: "the name of the navigation property and the name of the
# partner will be the same").
_MANY_TO_MANY: Final = (
    (
        "accountleads_association",
        "accountleads",
        "accountleadscollection",
        "accountleadid",
        16,
        ("account", "accountid"),
        ("lead", "leadid"),
    ),
    (
        "cr8a1_project_stakeholders",
        "cr8a1_project_stakeholders",
        "cr8a1_project_stakeholdersset",
        "cr8a1_project_stakeholdersid",
        10232,
        ("cr8a1_project", "cr8a1_projectid"),
        ("contact", "contactid"),
    ),
)


def _finish_declared(entity_metadata: JsonObject) -> None:
    entity_metadata.update({k: v for k, v in _DECLARED_DEFAULTS.items() if k not in entity_metadata})
    # Change tracking: on for the standard tables, as the service ships them; off for the custom table (its maker
    # did not tick "Track changes"), the private table and the intersect tables.
    untracked = ("IsCustomEntity", "IsPrivate", "IsIntersect")
    entity_metadata.setdefault("ChangeTrackingEnabled", not any(entity_metadata.get(flag) for flag in untracked))
    primary_id = entity_metadata["PrimaryIdAttribute"]
    for attribute in entity_metadata["Attributes"]:
        name = attribute["LogicalName"]
        system = name in _SYSTEM_MANAGED
        for key, value in _ATTRIBUTE_DEFAULTS.items():
            attribute.setdefault(key, value)
        attribute["IsPrimaryId"] = name == primary_id
        attribute["IsPrimaryName"] = name == entity_metadata["PrimaryNameAttribute"]
        attribute.setdefault("IsValidForCreate", not system)
        attribute.setdefault("IsValidForUpdate", not (system or name in _CREATE_ONLY or name == primary_id))


def _relationship_name(table: str, attribute: str, target: str, polymorphic: bool) -> str:
    known = _KNOWN_RELATIONSHIPS.get((table, attribute, target) if polymorphic else (table, attribute))
    return known or f"{target}_{table}_{attribute}"


def _navigation_name(attribute: JsonObject, target: str, polymorphic: bool) -> str:
    # Dataverse names a custom lookup's navigation property by its schema name (cr8a1_AccountId), a
    # polymorphic customer lookup by attribute and target (parentcustomerid_account).
    name: str = attribute["SchemaName"] if attribute.get("IsCustomAttribute") else attribute["LogicalName"]
    return f"{name}_{target}" if polymorphic else name


def _add_relationships(entities: list[JsonObject]) -> None:
    """Derive one-to-many / many-to-one relationships from every lookup's targets."""
    by_name = {entity_metadata["LogicalName"]: entity_metadata for entity_metadata in entities}
    for entity_metadata in entities:
        entity_metadata["ManyToOneRelationships"] = []
        entity_metadata.setdefault("OneToManyRelationships", [])
        entity_metadata["ManyToManyRelationships"] = []
    for entity_metadata in entities:
        table = entity_metadata["LogicalName"]
        for attribute in entity_metadata["Attributes"]:
            if attribute["AttributeType"] not in LOOKUP_TYPES or attribute.get("AttributeOf"):
                continue
            targets = attribute.get("Targets") or []
            polymorphic = attribute["AttributeType"] == "Customer"
            for target in targets if polymorphic else targets[:1]:
                schema_name = _relationship_name(table, attribute["LogicalName"], target, polymorphic)
                referenced = by_name.get(target)
                relationship = {
                    "@odata.type": "#Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
                    "SchemaName": schema_name,
                    "RelationshipType": "OneToManyRelationship",
                    "ReferencedEntity": target,
                    "ReferencedAttribute": referenced["PrimaryIdAttribute"] if referenced else f"{target}id",
                    "ReferencingEntity": table,
                    "ReferencingAttribute": attribute["LogicalName"],
                    "ReferencedEntityNavigationPropertyName": schema_name,
                    "ReferencingEntityNavigationPropertyName": _navigation_name(attribute, target, polymorphic),
                    "IsCustomRelationship": bool(attribute.get("IsCustomAttribute")),
                    "MetadataId": metadata_id("relationship", schema_name),
                }
                entity_metadata["ManyToOneRelationships"].append(relationship)
                if referenced is not None:
                    referenced["OneToManyRelationships"].append(relationship)


def _intersect_table(
    logical_name: str, entity_set: str, primary_id: str, object_type_code: int, sides: Sequence[tuple[str, str]]
) -> JsonObject:
    """The table behind an N:N relationship, as the service lists one: `IsIntersect`, owned by no one, its two
    id columns read-only (entity reference: accountleads); a custom one has no primary name column."""
    custom = logical_name.startswith("cr8a1_")
    attributes = [
        column(logical_name, primary_id, "Uniqueidentifier", "", required="SystemRequired", IsValidForUpdate=False),
        *(
            column(
                logical_name,
                name,
                "Uniqueidentifier",
                "",
                required="SystemRequired",
                IsValidForCreate=False,
                IsValidForUpdate=False,
            )
            for _, name in sides
        ),
        column(logical_name, "versionnumber", "BigInt", "Version Number", MinValue=-9223372036854775808),
    ]
    if not custom:
        attributes.append(string(logical_name, "name", "name", 100, required="ApplicationRequired"))
    schema_name = logical_name if custom else "AccountLeads"
    return {
        "LogicalName": logical_name,
        "SchemaName": schema_name,
        "EntitySetName": entity_set,
        "LogicalCollectionName": None,
        "CollectionSchemaName": None,
        "DisplayName": label(schema_name, logical_name),
        "DisplayCollectionName": label(schema_name, logical_name, "plural"),
        "Description": label("", logical_name, "description"),
        "ObjectTypeCode": object_type_code,
        "OwnershipType": "None",
        "PrimaryIdAttribute": primary_id,
        "PrimaryNameAttribute": None if custom else "name",
        "IsCustomEntity": custom,
        "IsIntersect": True,
        "MetadataId": metadata_id(logical_name),
        "Attributes": attributes,
        "Keys": [],
    }


def _intersect_tables() -> list[JsonObject]:
    return [
        _intersect_table(intersect, entity_set, primary_id, code, sides)
        for _, intersect, entity_set, primary_id, code, *sides in _MANY_TO_MANY
    ]


def _add_many_to_many(entities: list[JsonObject]) -> None:
    """Each N:N relationship, listed by both of its tables (ManyToManyRelationshipMetadata)."""
    by_name = {entity_metadata["LogicalName"]: entity_metadata for entity_metadata in entities}
    for schema_name, intersect, _, _, _, (first, first_column), (second, second_column) in _MANY_TO_MANY:
        relationship = {
            "@odata.type": "#Microsoft.Dynamics.CRM.ManyToManyRelationshipMetadata",
            "SchemaName": schema_name,
            "RelationshipType": "ManyToManyRelationship",
            "IntersectEntityName": intersect,
            "Entity1LogicalName": first,
            "Entity1IntersectAttribute": first_column,
            "Entity1NavigationPropertyName": schema_name,
            "Entity2LogicalName": second,
            "Entity2IntersectAttribute": second_column,
            "Entity2NavigationPropertyName": schema_name,
            "IsCustomRelationship": schema_name.startswith("cr8a1_"),
            "IsValidForAdvancedFind": True,
            "MetadataId": metadata_id("relationship", schema_name),
        }
        for table in (first, second):
            by_name[table]["ManyToManyRelationships"].append(relationship)


@cache
def entity_definitions() -> tuple[JsonObject, ...]:
    """Every table's EntityDefinitions entry, with Attributes, Keys and relationships."""
    account = _reference_table("account.json", primary_name="name", display="Account", plural="Accounts")
    account["Keys"] = [
        {
            "LogicalName": "account_accountnumber_key",
            "SchemaName": "account_accountnumber_key",
            "DisplayName": label("Account Number", "account", "key"),
            "KeyAttributes": ["accountnumber"],
            "EntityKeyIndexStatus": "Active",
            "EntityLogicalName": "account",
            "MetadataId": metadata_id("account", "key", "accountnumber"),
        }
    ]
    opportunity = _reference_table(
        "opportunity.json", primary_name="name", display="Opportunity", plural="Opportunities"
    )
    from ._activities import activity_tables  # deferred: that module builds on this one's helpers

    declared = [*_declared_tables(), *activity_tables(), _private_table(), *_intersect_tables()]
    for entity_metadata in declared:
        _finish_declared(entity_metadata)
    entities = [account, opportunity, *declared]
    for entity_metadata in entities:  # "Search for Dataverse records": searchable once this is set
        entity_metadata["SyncToExternalSearchIndex"] = entity_metadata["LogicalName"] in SEARCH_INDEX
    _add_relationships(entities)
    _add_many_to_many(entities)
    return tuple(entities)


def _private_table() -> JsonObject:
    """One of the platform's private tables (`IsPrivate`: for the platform's own use), as real environments list."""
    name = "entitydatasource"
    private = entity(
        name,
        entity_set="entitydatasources",
        display="Entity Data Source",
        plural="Entity Data Sources",
        object_type_code=85,
        primary_name="name",
        ownership="OrganizationOwned",
        columns=[string(name, "name", "Name", 100), string(name, "entityname", "Entity Name", 100)],
    )
    private["IsPrivate"] = True
    return private


@cache
def build_catalog() -> Catalog:
    """The typed catalog of every sandbox table (built once per process: the metadata never changes)."""
    return Catalog(table_from_metadata(entity_metadata) for entity_metadata in entity_definitions())
