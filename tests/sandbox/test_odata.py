"""Parsing OData query options: precedence, every literal, Dataverse's query functions, keys and errors."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox._catalog import Column
from sandbox._errors import ODATA_ERROR, WebApiError, unknown_property
from sandbox._expression import (
    And,
    Comparison,
    ComparisonOperator,
    Expression,
    Membership,
    Not,
    Or,
    Property,
    TextMatch,
    Value,
    compile_filter,
    storage_value,
)
from sandbox._odata import (
    MAX_DEPTH,
    ExpandOption,
    parse_bool_option,
    parse_expand,
    parse_filter,
    parse_key,
    parse_orderby,
    parse_select,
    parse_top,
)
from sandbox._tables import build_catalog

GUID = uuid.UUID("00000000-0000-0000-0000-000000000001")
NAME = Property("name")


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def eq(name: str, value: Value) -> Comparison:
    return Comparison("eq", Property(name), value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a eq 1", eq("a", 1)),
        ("a eq 1 and b eq 2", And((eq("a", 1), eq("b", 2)))),
        ("a eq 1 or b eq 2 or c eq 3", Or((eq("a", 1), eq("b", 2), eq("c", 3)))),
        ("a eq 1 or b eq 2 and c eq 3", Or((eq("a", 1), And((eq("b", 2), eq("c", 3)))))),
        ("a eq 1 and b eq 2 or c eq 3", Or((And((eq("a", 1), eq("b", 2))), eq("c", 3)))),
        ("(a eq 1 or b eq 2) and c eq 3", And((Or((eq("a", 1), eq("b", 2))), eq("c", 3)))),
        ("not (a eq 1) and b eq 2", And((Not(eq("a", 1)), eq("b", 2)))),
        ("not (a eq 1 and b eq 2)", Not(And((eq("a", 1), eq("b", 2))))),
        ("not not (a eq 1)", Not(Not(eq("a", 1)))),
        ("((a eq 1))", eq("a", 1)),
        ("  a   eq\n1\t", eq("a", 1)),
        ("not contains(name,'x')", Not(TextMatch("contains", NAME, "x"))),
        (
            "contains(name,'x') or startswith(name, 'y') and endswith( name ,'z')",
            Or(
                (
                    TextMatch("contains", NAME, "x"),
                    And((TextMatch("startswith", NAME, "y"), TextMatch("endswith", NAME, "z"))),
                )
            ),
        ),
    ],
)
def test_filter_follows_odata_precedence_and_parentheses(text: str, expected: Expression) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("null", None),
        ("true", True),
        ("false", False),
        ("'Contoso'", "Contoso"),
        ("''", ""),
        ("'O''Neil'", "O'Neil"),
        ("''''", "'"),
        ("'a '' or 1 eq 1 or '''", "a ' or 1 eq 1 or '"),
        ("'100% & #1\nnext line'", "100% & #1\nnext line"),
        ("'Zürich 東京 😀'", "Zürich 東京 😀"),
        ("'a eq b) or (c'", "a eq b) or (c"),
        ("42", 42),
        ("0", 0),
        ("-3", -3),
        ("5L", 5),
        ("1.5", Decimal("1.5")),
        ("1.5M", Decimal("1.5")),
        ("-0.25m", Decimal("-0.25")),
        ("2.0d", Decimal("2.0")),
        ("1e3", Decimal("1e3")),
        ("00000000-0000-0000-0000-000000000001", GUID),
        ("ABCDEF01-2345-6789-ABCD-EF0123456789", uuid.UUID("abcdef01-2345-6789-abcd-ef0123456789")),
        ("2024-01-31", date(2024, 1, 31)),
        ("2024-01-31T10:00:00Z", datetime(2024, 1, 31, 10, 0, tzinfo=UTC)),
        ("2024-01-31T10:00Z", datetime(2024, 1, 31, 10, 0, tzinfo=UTC)),
        ("2024-01-31T10:00:00.125Z", datetime(2024, 1, 31, 10, 0, 0, 125000, tzinfo=UTC)),
        ("2024-01-31T10:00:00+02:00", datetime(2024, 1, 31, 10, 0, tzinfo=timezone(timedelta(hours=2)))),
        ("2024-01-31T10:00:00-05:30", datetime(2024, 1, 31, 10, 0, tzinfo=timezone(-timedelta(hours=5, minutes=30)))),
    ],
)
def test_every_literal_kind_becomes_its_python_value(literal: str, value: Value) -> None:
    parsed = parse_filter(f"name eq {literal}")
    assert parsed == eq("name", value)
    assert isinstance(parsed, Comparison)
    assert type(parsed.value) is type(value)


def test_datetime_literals_are_timezone_aware() -> None:
    parsed = parse_filter("createdon ge 2024-01-31T10:00:00+02:00")
    assert isinstance(parsed, Comparison)
    assert isinstance(parsed.value, datetime)
    assert parsed.value.astimezone(UTC) == datetime(2024, 1, 31, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'x' eq name", Comparison("eq", NAME, "x")),
        ("'x' ne name", Comparison("ne", NAME, "x")),
        ("5 gt revenue", Comparison("lt", Property("revenue"), 5)),
        ("5 ge revenue", Comparison("le", Property("revenue"), 5)),
        ("5 lt revenue", Comparison("gt", Property("revenue"), 5)),
        ("5 le revenue", Comparison("ge", Property("revenue"), 5)),
        ("null eq _parentcustomerid_value", Comparison("eq", Property("_parentcustomerid_value"), None)),
    ],
)
def test_a_literal_on_the_left_is_mirrored_to_the_right(text: str, expected: Comparison) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize("operator", get_args(ComparisonOperator))
def test_every_comparison_operator_is_understood(operator: ComparisonOperator) -> None:
    assert parse_filter(f"revenue {operator} 10") == Comparison(operator, Property("revenue"), 10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("_parentcustomerid_value eq " + str(GUID), eq("_parentcustomerid_value", GUID)),
        ("_ownerid_value ne null", Comparison("ne", Property("_ownerid_value"), None)),
        ("address1_line1 eq 'x'", eq("address1_line1", "x")),
    ],
)
def test_lookup_and_underscored_properties_are_property_names(text: str, expected: Comparison) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['a','b'])",
            Membership(NAME, ("a", "b")),
        ),
        (
            "Microsoft.Dynamics.CRM.NotIn(PropertyName='statecode',PropertyValues=['0','1'])",
            Membership(Property("statecode"), ("0", "1"), negated=True),
        ),
        (
            "Microsoft.Dynamics.CRM.In( PropertyValues = [ 'O''Neil' , ',)]' ] , PropertyName = 'name' )",
            Membership(NAME, ("O'Neil", ",)]")),
        ),
        (
            "not Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['a']) and revenue gt 1",
            And((Not(Membership(NAME, ("a",))), Comparison("gt", Property("revenue"), 1))),
        ),
    ],
)
def test_in_and_not_in_become_a_membership_of_strings(text: str, expected: Membership) -> None:
    assert parse_filter(text) == expected


@given(st.text())
def test_any_quoted_text_is_exactly_one_value_and_never_changes_the_query(value: str) -> None:
    assert parse_filter(f"name eq {quote(value)}") == eq("name", value)


@given(st.text())
def test_any_quoted_text_is_one_value_of_a_text_function(value: str) -> None:
    assert parse_filter(f"contains(name,{quote(value)}) and revenue gt 0") == And(
        (TextMatch("contains", NAME, value), Comparison("gt", Property("revenue"), 0))
    )


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_any_quoted_texts_are_the_values_of_in(values: list[str]) -> None:
    listed = ",".join(quote(value) for value in values)
    parsed = parse_filter(f"Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[{listed}])")
    assert parsed == Membership(NAME, tuple(values))


@given(st.text())
def test_any_quoted_text_survives_a_nested_expand_filter_and_a_key(value: str) -> None:
    expanded = parse_expand(f"primarycontactid($select=fullname;$filter=fullname eq {quote(value)}),owninguser")
    assert expanded == [
        ExpandOption("primarycontactid", select=["fullname"], filter=eq("fullname", value)),
        ExpandOption("owninguser"),
    ]
    assert parse_key(f"accountnumber={quote(value)}") == {"accountnumber": value}


# Pieces of OData and of broken OData, so that random text reaches deep into the parser.
FRAGMENTS = st.sampled_from(
    [
        " ",
        "'",
        "''",
        "(",
        ")",
        ",",
        "=",
        "[",
        "]",
        ";",
        "$select=",
        "$filter=",
        "name",
        "eq",
        "gt",
        "and",
        "or",
        "not",
        "null",
        "true",
        "contains",
        "Microsoft.Dynamics.CRM.In",
        "PropertyName",
        "PropertyValues",
        "-",
        "1",
        "1.5M",
        "2024-01-31",
        "T10:00:00Z",
        "00000000-0000-0000-0000-000000000001",
        "/",
        "\n",
        "é",
    ]
)
ODATA_LIKE = st.lists(st.one_of(FRAGMENTS, st.text(max_size=3)), max_size=30).map("".join)


@given(ODATA_LIKE)
def test_any_text_is_parsed_or_refused_with_a_400_never_a_crash(text: str) -> None:
    for parse in (parse_filter, parse_expand, parse_key, parse_orderby, parse_select, parse_top):
        try:
            parse(text)
        except WebApiError as error:
            assert (error.status, error.code) == (400, ODATA_ERROR)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name eq", "Syntax error at position 7 in 'name eq'."),
        ("name", "Syntax error at position 4 in 'name'."),
        ("eq 'x'", "Syntax error at position 0 in 'eq 'x''."),
        ("name eq 'x' extra", "Syntax error at position 12 in 'name eq 'x' extra'."),
        ("name eq 'x' and", "Syntax error at position 15 in 'name eq 'x' and'."),
        ("name eq 'x' or", "Syntax error at position 14"),
        ("name eq 'x' eq 'y'", "Syntax error at position 12"),
        ("(name eq 'x'", "Syntax error at position 12 in '(name eq 'x''. Expected ')'"),
        ("name eq 'x')", "Syntax error at position 11"),
        ("()", "Syntax error at position 1"),
        ("name like 'x'", "Syntax error at position 5 in 'name like 'x''. Expected eq, ne, gt, ge, lt or le"),
        ("name eq 'x' && revenue gt 1", "Syntax error at position 12"),
        ("name eq -", "Syntax error at position 8"),
        ("name eq 12abc", "Syntax error at position 8"),
        ("primarycontactid/fullname eq 'x'", "Syntax error at position 16"),
        ("name.first eq 'x'", "Syntax error at position 0"),
        ("and eq 1", "Syntax error at position 0"),
        ("not name eq 'x'", "Syntax error at position 0 in 'not name eq 'x''. 'not' applies to"),
        ("1 eq 1", "Syntax error at position 0 in '1 eq 1'. Compare a property with a value"),
        ("firstname eq lastname", "Comparing two columns ('firstname' and 'lastname') is not supported"),
        ("name eq 'x", "There is an unterminated string literal at position 8 in 'name eq 'x'."),
        ("name eq 'x''", "There is an unterminated string literal at position 11"),
        ("name eq '", "There is an unterminated string literal at position 8"),
        ("foo(name,'x')", "Unknown function 'foo'."),
        ("Contains(name,'x')", "Unknown function 'Contains'."),
        ("Microsoft.Dynamics.CRM.Today(PropertyName='createdon')", "Unknown function 'Microsoft.Dynamics.CRM.Today'."),
        ("contains(name,1)", "The function 'contains' needs a string value"),
        ("contains(name)", "Syntax error at position 13 in 'contains(name)'. Expected ','"),
        ("contains('x',name)", "Syntax error at position 9"),
        ("contains(name,'x'", "Syntax error at position 17"),
        ("contains(name,'x') eq true", "Syntax error at position 19"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='name')", "needs a property and at least one value"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[])", "at least one value"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[1,2])", "Expected a value in quotes"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['a' 'b'])", "Expected ','"),
        ("Microsoft.Dynamics.CRM.In(PropertyName=name,PropertyValues=['a'])", "Expected the property name in quotes"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='a b',PropertyValues=['a'])", "'a b' is not a property name"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyName='b',PropertyValues=['a'])", "repeated parameter"),
        ("Microsoft.Dynamics.CRM.In(Other='a',PropertyValues=['a'])", "Unexpected or repeated parameter 'Other'"),
        ("createdon eq 2024-02-30", "The date literal '2024-02-30' is not a valid date."),
        ("createdon eq 2024-01-31T25:00:00Z", "The date and time literal '2024-01-31T25:00:00Z' is not valid."),
        ("createdon eq 2024-01-31T10:00:00", "'2024-01-31T10:00:00' needs a time zone"),
        ("revenue eq " + "9" * 5000, "The number literal at position 11 is too long."),
        ("", "The $filter query option is empty"),
        ("   ", "The $filter query option is empty"),
    ],
)
def test_a_malformed_filter_is_a_400_naming_where_it_went_wrong(text: str, message: str) -> None:
    with pytest.raises(WebApiError) as caught:
        parse_filter(text)
    assert (caught.value.status, caught.value.code) == (400, ODATA_ERROR)
    assert message in caught.value.message


def test_an_error_quotes_at_most_a_bounded_part_of_a_huge_filter() -> None:
    with pytest.raises(WebApiError) as caught:
        parse_filter("name eq 'x' and " + "a" * 100_000 + " eq")
    assert len(caught.value.message) < 400


@pytest.mark.parametrize(("depth", "accepted"), [(MAX_DEPTH, True), (MAX_DEPTH + 1, False), (100_000, False)])
def test_deep_parentheses_are_refused_with_a_clear_error_not_a_crash(depth: int, accepted: bool) -> None:
    text = "(" * depth + "a eq 1" + ")" * depth
    if accepted:
        assert parse_filter(text) == eq("a", 1)
        return
    with pytest.raises(WebApiError, match="nested more than 100 levels"):
        parse_filter(text)


@pytest.mark.parametrize(("count", "accepted"), [(MAX_DEPTH, True), (100_000, False)])
def test_long_chains_of_not_are_refused_with_a_clear_error_not_a_crash(count: int, accepted: bool) -> None:
    text = "not " * count + "contains(name,'x')"
    if accepted:
        parsed = parse_filter(text)
        for _ in range(count):
            assert isinstance(parsed, Not)
            parsed = parsed.operand
        assert parsed == TextMatch("contains", NAME, "x")
        return
    with pytest.raises(WebApiError, match="nested more than 100 levels"):
        parse_filter(text)


def test_a_long_unterminated_literal_of_doubled_quotes_is_refused() -> None:
    with pytest.raises(WebApiError, match="unterminated string literal"):
        parse_filter("name eq '" + "''" * 100_000)


def test_long_flat_conditions_parse_without_recursion() -> None:
    parsed = parse_filter(" or ".join(f"a eq {number}" for number in range(20_000)))
    assert isinstance(parsed, Or)
    assert len(parsed.operands) == 20_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name", ["name"]),
        ("name,revenue", ["name", "revenue"]),
        (" name , revenue ,_parentaccountid_value ", ["name", "revenue", "_parentaccountid_value"]),
    ],
)
def test_select_lists_property_names(text: str, expected: list[str]) -> None:
    assert parse_select(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "name,", ",name", "name,,revenue", "name revenue", "name;revenue", "a.b", "*"]
)
def test_a_malformed_select_is_a_400(text: str) -> None:
    with pytest.raises(WebApiError, match=r"Syntax error in \$select") as caught:
        parse_select(text)
    assert (caught.value.status, caught.value.code) == (400, ODATA_ERROR)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name", [(NAME, False)]),
        ("name asc", [(NAME, False)]),
        ("name desc", [(NAME, True)]),
        ("name asc,createdon desc", [(NAME, False), (Property("createdon"), True)]),
        (" revenue  desc , name ", [(Property("revenue"), True), (NAME, False)]),
        ("_parentaccountid_value desc", [(Property("_parentaccountid_value"), True)]),
    ],
)
def test_orderby_lists_properties_and_directions(text: str, expected: list[tuple[Property, bool]]) -> None:
    assert parse_orderby(text) == expected


@pytest.mark.parametrize("text", ["", "name,", "name up", "name asc desc", "name DESC", "a.b asc", "'name' asc"])
def test_a_malformed_orderby_is_a_400(text: str) -> None:
    with pytest.raises(WebApiError, match=r"Syntax error in \$orderby") as caught:
        parse_orderby(text)
    assert (caught.value.status, caught.value.code) == (400, ODATA_ERROR)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("primarycontactid", [ExpandOption("primarycontactid")]),
        (
            "primarycontactid($select=fullname,emailaddress1),parentaccountid($select=name)",
            [
                ExpandOption("primarycontactid", select=["fullname", "emailaddress1"]),
                ExpandOption("parentaccountid", select=["name"]),
            ],
        ),
        (
            "contact_customer_accounts($select=fullname;$filter=contains(fullname,'a;b),c') and not (statecode eq 1)"
            ";$orderby=fullname desc;$top=5)",
            [
                ExpandOption(
                    "contact_customer_accounts",
                    select=["fullname"],
                    filter=And((TextMatch("contains", Property("fullname"), "a;b),c"), Not(eq("statecode", 1)))),
                    orderby=[(Property("fullname"), True)],
                    top=5,
                )
            ],
        ),
        (
            " primarycontactid ( $select = fullname ) , owninguser ",
            [
                ExpandOption("primarycontactid", select=["fullname"]),
                ExpandOption("owninguser"),
            ],
        ),
    ],
)
def test_expand_lists_navigation_properties_with_nested_options(text: str, expected: list[ExpandOption]) -> None:
    assert parse_expand(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Syntax error in $expand"),
        ("primarycontactid,", "Syntax error in $expand"),
        ("primarycontactid/parentcustomerid", "Syntax error in $expand"),
        ("primarycontactid()", "The option '' inside $expand is not supported"),
        ("primarycontactid($expand=owninguser)", "The option '$expand' inside $expand is not supported"),
        ("primarycontactid($select=a;$select=b)", "is not supported or is repeated"),
        ("primarycontactid(select=a)", "The option 'select' inside $expand"),
        ("primarycontactid($select=a", "A '(' is not closed."),
        ("primarycontactid($select=a))", "has no matching '('"),
        ("primarycontactid($filter=name eq 'x)", "unterminated string literal"),
        ("primarycontactid($filter=name eq)", "Syntax error at position 7 in 'name eq'."),
        ("primarycontactid($top=-1)", "Invalid value '-1' for $top query option found."),
        ("primarycontactid($select=)", r"Syntax error in $select"),
    ],
)
def test_a_malformed_expand_is_a_400(text: str, message: str) -> None:
    with pytest.raises(WebApiError) as caught:
        parse_expand(text)
    assert (caught.value.status, caught.value.code) == (400, ODATA_ERROR)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00000000-0000-0000-0000-000000000001", GUID),
        (" 00000000-0000-0000-0000-000000000001 ", GUID),
        ("accountnumber='A-1'", {"accountnumber": "A-1"}),
        ("accountnumber='O''Neil, (1)'", {"accountnumber": "O'Neil, (1)"}),
        ("firstname='A',lastname='B'", {"firstname": "A", "lastname": "B"}),
        ("firstname = 'A' , lastname = 'B'", {"firstname": "A", "lastname": "B"}),
        (f"_parentcustomerid_value={GUID}", {"_parentcustomerid_value": GUID}),
        ("accountid=00000000-0000-0000-0000-000000000001", {"accountid": GUID}),
        ("employeeid=42", {"employeeid": 42}),
        ("rate=1.5", {"rate": Decimal("1.5")}),
        ("isprimary=true", {"isprimary": True}),
    ],
)
def test_a_key_is_a_guid_or_alternate_key_pairs(text: str, expected: uuid.UUID | dict[str, Value]) -> None:
    assert parse_key(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "'A-1'",
        "42",
        "not-a-guid",
        "accountnumber",
        "accountnumber=",
        "accountnumber='A-1',",
        "accountnumber='A-1' name='x'",
        "accountnumber=name",
        "accountnumber=null",
        "a.b='x'",
        "accountnumber='A-1",
        "accountnumber='A-1',accountnumber='A-2'",
    ],
)
def test_a_malformed_key_is_a_400(text: str) -> None:
    with pytest.raises(WebApiError) as caught:
        parse_key(text)
    assert (caught.value.status, caught.value.code) == (400, ODATA_ERROR)


@pytest.mark.parametrize(
    ("text", "expected"), [("0", 0), ("5", 5), ("5000", 5000), (" 7 ", 7), ("2147483647", 2**31 - 1)]
)
def test_top_is_a_non_negative_integer(text: str, expected: int) -> None:
    assert parse_top(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "1.5", "five", "1e3", "2147483648", "99999999999", "+5"])
def test_a_bad_top_is_a_400_saying_what_top_needs(text: str) -> None:
    with pytest.raises(WebApiError, match=r"The \$top query option requires a non-negative integer value") as caught:
        parse_top(text)
    assert (caught.value.status, caught.value.code) == (400, ODATA_ERROR)


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("false", False), ("True", True), (" false ", False)])
def test_count_is_true_or_false(text: str, expected: bool) -> None:
    assert parse_bool_option("$count", text) is expected


@pytest.mark.parametrize("text", ["", "yes", "1", "truth"])
def test_a_bad_count_is_a_400_naming_the_option(text: str) -> None:
    with pytest.raises(WebApiError, match=r"for \$count query option found. Valid values are 'true' and 'false'"):
        parse_bool_option("$count", text)


# -- meaning end to end: a parsed filter compiled against SQLite -------------------------------------------------

ACCOUNT = build_catalog().get("account")
CONTOSO_ID = uuid.UUID("11111111-1111-1111-1111-111111111111")
ROWS: list[dict[str, Value]] = [
    {
        "name": "Contoso",
        "revenue": 5000,
        "numberofemployees": 10,
        "createdon": datetime(2024, 1, 31, 9, 0, tzinfo=UTC),
        "parentaccountid": None,
        "donotemail": False,
    },
    {
        "name": "Fabrikam",
        "revenue": 500,
        "numberofemployees": 200,
        "createdon": datetime(2024, 1, 31, 7, 0, tzinfo=UTC),
        "parentaccountid": CONTOSO_ID,
        "donotemail": True,
    },
    {
        "name": "O'Neil",
        "revenue": 2000,
        "numberofemployees": None,
        "createdon": datetime(2023, 12, 1, tzinfo=UTC),
        "parentaccountid": CONTOSO_ID,
        "donotemail": True,
    },
    {
        "name": "100% Wool",
        "revenue": None,
        "numberofemployees": 3,
        "createdon": datetime(2024, 2, 1, tzinfo=UTC),
        "parentaccountid": None,
        "donotemail": False,
    },
]


def column(name: str) -> Column:
    assert ACCOUNT is not None
    return ACCOUNT.columns[name]


def resolve(prop: Property) -> tuple[str, Column]:
    assert ACCOUNT is not None
    found = ACCOUNT.column_by_property(prop.name)
    if found is None or found.logical_name not in ROWS[0]:
        raise unknown_property("account", prop.name)
    return f'"{found.logical_name}"', found


@pytest.fixture
def accounts() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    connection.execute(
        'CREATE TABLE account ("name" TEXT COLLATE NOCASE, "revenue" REAL, "numberofemployees" INTEGER, '
        '"createdon" TEXT, "parentaccountid" TEXT, "donotemail" INTEGER)'
    )
    for row in ROWS:
        connection.execute(
            "INSERT INTO account VALUES (?, ?, ?, ?, ?, ?)",
            [storage_value(column(name), value) for name, value in row.items()],
        )
    yield connection
    connection.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name eq 'O''Neil'", ["O'Neil"]),
        ("name eq 'contoso'", ["Contoso"]),
        ("'Contoso' eq name", ["Contoso"]),
        ("name eq 'x'' or ''1'' eq ''1'", []),
        ("name eq 'x'' or name ne ''y'", []),
        ("contains(name,'%')", ["100% Wool"]),
        ("contains(name,'''')", ["O'Neil"]),
        ("startswith(name,'con')", ["Contoso"]),
        ("not contains(name,'o')", ["Fabrikam"]),
        ("1000 lt revenue", ["Contoso", "O'Neil"]),
        ("revenue gt 1000 and not (donotemail eq true)", ["Contoso"]),
        ("name eq 'Fabrikam' or name eq 'Contoso' and revenue lt 1000", ["Fabrikam"]),
        ("(name eq 'Fabrikam' or name eq 'Contoso') and revenue lt 1000", ["Fabrikam"]),
        ("revenue eq null", ["100% Wool"]),
        ("numberofemployees ne 10", ["Fabrikam", "O'Neil", "100% Wool"]),
        ("revenue ge 500.5M", ["Contoso", "O'Neil"]),
        (f"_parentaccountid_value eq {CONTOSO_ID}", ["Fabrikam", "O'Neil"]),
        ("createdon ge 2024-01-31T10:00:00+02:00", ["Contoso", "100% Wool"]),
        ("createdon lt 2024-01-31", ["O'Neil"]),
        ("Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['Contoso','O''Neil'])", ["Contoso", "O'Neil"]),
        (
            "Microsoft.Dynamics.CRM.NotIn(PropertyName='name',PropertyValues=['Contoso','O''Neil'])",
            ["Fabrikam", "100% Wool"],
        ),
    ],
)
def test_a_parsed_filter_selects_the_rows_it_means(
    accounts: sqlite3.Connection, text: str, expected: list[str]
) -> None:
    condition, parameters = compile_filter(parse_filter(text), resolve)
    found = accounts.execute(f'SELECT "name" FROM account WHERE {condition} ORDER BY rowid', parameters).fetchall()  # noqa: S608
    assert [name for (name,) in found] == expected
