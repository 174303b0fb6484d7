"""A `$filter` naming a lookup column by its logical name is rewritten to the property the service filters on,
and nothing else in it changes."""

from __future__ import annotations

import pytest

from dataverse import Column, rewrite_lookup_names

COLUMNS = {
    column.logical_name: column
    for column in (
        Column.from_json({"LogicalName": "primarycontactid", "AttributeType": "Lookup"}),
        Column.from_json({"LogicalName": "parentcustomerid", "AttributeType": "Customer"}),
        Column.from_json({"LogicalName": "ownerid", "AttributeType": "Owner"}),
        Column.from_json({"LogicalName": "name", "AttributeType": "String"}),
    )
}
ROW = "00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        (f"parentcustomerid eq {ROW}", f"_parentcustomerid_value eq {ROW}"),
        ("primarycontactid eq null", "_primarycontactid_value eq null"),
        (
            "(primarycontactid ne null)and ownerid eq null",
            "(_primarycontactid_value ne null)and _ownerid_value eq null",
        ),
        ("not  (primarycontactid eq null)", "not  (_primarycontactid_value eq null)"),
        (f"primarycontactid in ({ROW})", f"_primarycontactid_value in ({ROW})"),
    ],
)
def test_a_lookup_named_by_its_logical_name_is_sent_as_its_value_property(written: str, sent: str) -> None:
    assert rewrite_lookup_names(written, COLUMNS) == sent


@pytest.mark.parametrize(
    "text",
    [
        "primarycontactid/fullname eq 'x'",  # a navigation path: the relationship, not the column
        "startswith(primarycontactid/fullname,'Y')",
        "contact_customer_accounts/any(c: c/parentcustomerid eq null)",  # a column of another table
        "contact_customer_accounts/any(primarycontactid: primarycontactid/fullname eq 'x')",  # a lambda variable
        "name eq 'primarycontactid eq null'",  # text in a string literal
        "name eq 'it''s primarycontactid'",  # a doubled quote inside the literal
        "name eq 'primarycontactid",  # an unterminated literal: the service says what is wrong
        "Microsoft.Dynamics.CRM.EqualUserId(PropertyName='ownerid')",  # query functions take logical names
        "_primarycontactid_value eq null",  # already the property
        "PrimaryContactId eq null",  # not a logical name (they are lower case): the service says so
        "revenue gt 1000",  # not a column this table has as a lookup
        "name eq null",  # not a lookup
    ],
)
def test_everything_else_in_a_filter_is_sent_as_written(text: str) -> None:
    assert rewrite_lookup_names(text, COLUMNS) == text
