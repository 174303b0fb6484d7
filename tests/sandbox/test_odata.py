"""Parsing OData query options: precedence, every literal, paths, lambdas, query functions, keys and errors."""

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

from sandbox._binding import FilterBinder
from sandbox._catalog import Column
from sandbox._directory import USERS
from sandbox._errors import ODATA_ERROR, RESOURCE_NOT_FOUND, WebApiError, unknown_property
from sandbox._expression import (
    And,
    ColumnComparison,
    Comparison,
    ComparisonOperator,
    Expression,
    Lambda,
    Not,
    Or,
    Property,
    QueryFunction,
    TextMatch,
    Value,
    compile_filter,
    storage_value,
)
from sandbox._functions import require_known
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
from sandbox._security import Caller
from sandbox._tables import build_catalog

GUID = uuid.UUID("00000000-0000-0000-0000-000000000001")
NAME = Property("name")


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def eq(name: str, value: Value) -> Comparison:
    return Comparison("eq", Property(name), value)


def eq_in(variable: str, name: str, value: Value) -> Comparison:
    return Comparison("eq", Property(name, variable), value)


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


def values(*texts: Value) -> tuple[tuple[str, Value | tuple[Value, ...]], ...]:
    return (("PropertyValues", texts),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['a','b'])",
            QueryFunction("In", "name", values("a", "b")),
        ),
        (
            "Microsoft.Dynamics.CRM.NotIn(PropertyName='statecode',PropertyValues=['0','1'])",
            QueryFunction("NotIn", "statecode", values("0", "1")),
        ),
        (
            "Microsoft.Dynamics.CRM.In( PropertyValues = [ 'O''Neil' , ',)]' ] , PropertyName = 'name' )",
            QueryFunction("In", "name", values("O'Neil", ",)]")),
        ),
        (
            'Microsoft.Dynamics.CRM.Between(PropertyName=\'numberofemployees\',PropertyValues=["5","2000"])',
            QueryFunction("Between", "numberofemployees", values("5", "2000")),
        ),
        (
            'Microsoft.Dynamics.CRM.In(PropertyName=\'lastname\',PropertyValues=["O\'Brian","say \\"hi\\""])',
            QueryFunction("In", "lastname", values("O'Brian", 'say "hi"')),
        ),
        (
            "Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon',PropertyValue=7)",
            QueryFunction("LastXDays", "createdon", (("PropertyValue", 7),)),
        ),
        (
            "Microsoft.Dynamics.CRM.Today(PropertyName='createdon')",
            QueryFunction("Today", "createdon"),
        ),
        (
            "not Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['a']) and revenue gt 1",
            And((Not(QueryFunction("In", "name", values("a"))), Comparison("gt", Property("revenue"), 1))),
        ),
    ],
)
def test_query_functions_keep_their_parameters(text: str, expected: Expression) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "aliases", "expected"),
    [
        ("@p1 ne @p3", {"@p1": "revenue"}, Comparison("ne", Property("revenue"), None)),
        ("name eq @p1", {"@p1": "'O''Neil'"}, eq("name", "O'Neil")),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)",
            {"@p1": "'lastname'", "@p2": '["OBrian","O\'Brian"]'},
            QueryFunction("In", "lastname", values("OBrian", "O'Brian")),
        ),
        ("name eq @p1", {"@p1": "'x'' or name ne ''y'"}, eq("name", "x' or name ne 'y")),
    ],
)
def test_parameter_aliases_stand_for_their_values_and_unassigned_ones_for_null(
    text: str, aliases: dict[str, str], expected: Expression
) -> None:
    assert parse_filter(text, aliases) == expected


def test_a_parameter_alias_cannot_be_used_inside_expand() -> None:
    with pytest.raises(WebApiError, match="parameter alias '@p1' can't be used here"):
        parse_expand("contact_customer_accounts($filter=fullname eq @p1)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("primarycontactid/fullname eq 'x'", Comparison("eq", Property("fullname", None, ("primarycontactid",)), "x")),
        (
            "primarycontactid/createdby/fullname eq 'x'",
            Comparison("eq", Property("fullname", None, ("primarycontactid", "createdby")), "x"),
        ),
        (
            "startswith(primarycontactid/fullname,'Y')",
            TextMatch("startswith", Property("fullname", None, ("primarycontactid",)), "Y"),
        ),
        ("contact_customer_accounts/any()", Lambda("any", Property("contact_customer_accounts"))),
        (
            "contact_customer_accounts/any(c: c/fullname eq 'x')",
            Lambda("any", Property("contact_customer_accounts"), "c", eq_in("c", "fullname", "x")),
        ),
        (
            "contact_customer_accounts/all(c:c/statecode eq 0)",
            Lambda("all", Property("contact_customer_accounts"), "c", eq_in("c", "statecode", 0)),
        ),
        (
            "not contact_customer_accounts/any(c: contains(c/fullname,'a'))",
            Not(
                Lambda(
                    "any",
                    Property("contact_customer_accounts"),
                    "c",
                    TextMatch("contains", Property("fullname", "c"), "a"),
                )
            ),
        ),
        (
            "contact_customer_accounts/any(c: c/jobtitle eq 'j' and "
            "c/opportunity_customer_contacts/any(o: o/name ne 'N/A'))",
            Lambda(
                "any",
                Property("contact_customer_accounts"),
                "c",
                And(
                    (
                        eq_in("c", "jobtitle", "j"),
                        Lambda(
                            "any",
                            Property("opportunity_customer_contacts", "c"),
                            "o",
                            Comparison("ne", Property("name", "o"), "N/A"),
                        ),
                    )
                ),
            ),
        ),
        (
            "contact_customer_accounts/any(c: c/parentcustomerid_account/name eq 'x')",
            Lambda(
                "any",
                Property("contact_customer_accounts"),
                "c",
                Comparison("eq", Property("name", "c", ("parentcustomerid_account",)), "x"),
            ),
        ),
        ("firstname eq lastname", ColumnComparison("eq", Property("firstname"), Property("lastname"))),
    ],
)
def test_paths_lambdas_and_column_comparisons_parse(text: str, expected: Expression) -> None:
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
def test_any_quoted_texts_are_the_values_of_in(texts: list[str]) -> None:
    listed = ",".join(quote(text) for text in texts)
    parsed = parse_filter(f"Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[{listed}])")
    assert parsed == QueryFunction("In", "name", values(*texts))


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
            assert (error.status, error.code) in ((400, ODATA_ERROR), (501, RESOURCE_NOT_FOUND))


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
        ("name.first eq 'x'", "Syntax error at position 0"),
        ("primarycontactid/ eq 'x'", "Syntax error at position 18"),
        ("contact_customer_accounts/any(c c/fullname eq 'x')", "Expected ':' after the lambda variable"),
        ("contact_customer_accounts/all()", "Expected a lambda variable"),
        ("contact_customer_accounts/any(c: fullname eq 'x')", "name the related row's properties through its variable"),
        ("a/any(c: c/b/any(c: c/d eq 1))", "The range variable 'c' has already been declared."),
        ("a/any(c: c eq 1)", "Name a property of c"),
        ("firstname eq parentcustomerid_account/name", "columns of related rows can't be compared"),
        ("and eq 1", "Syntax error at position 0"),
        ("not name eq 'x'", "Syntax error at position 0 in 'not name eq 'x''. 'not' applies to"),
        ("1 eq 1", "Syntax error at position 0 in '1 eq 1'. Compare a property with a value"),
        ("lastname eq 'O'Bryan'", "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."),
        ("name eq 'x", "There is an unterminated literal at position 10 in 'name eq 'x'."),
        ("name eq 'x''", "There is an unterminated literal at position 12"),
        ("name eq '", "There is an unterminated literal at position 9"),
        ("foo(name,'x')", "An unknown function with name 'foo' was found."),
        ("Contains(name,'x')", "An unknown function with name 'Contains' was found."),
        ("contains(name,1)", "The function 'contains' needs a string value"),
        ("contains(name)", "Syntax error at position 13 in 'contains(name)'. Expected ','"),
        ("contains('x',name)", "Syntax error at position 9"),
        ("contains(name,'x'", "Syntax error at position 17"),
        ("contains(name,'x') eq true", "Syntax error at position 19"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[1,2])", "Expected a value in quotes"),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['a' 'b'])",
            "Invalid JSON. A comma character ',' was expected in scope 'Array'.",
        ),
        ("Microsoft.Dynamics.CRM.In(PropertyName=name,PropertyValues=['a'])", "Expected a value, found 'name'"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='a b',PropertyValues=['a'])", "found 'a b'"),
        ("Microsoft.Dynamics.CRM.In(PropertyValues=['a'])", "needs PropertyName"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyName='b',PropertyValues=['a'])", "repeated parameter"),
        ("Microsoft.Dynamics.CRM.In(Other='a',PropertyValues=['a'])", "Unexpected or repeated parameter 'Other'"),
        ('name eq "x"', "Expected a property name or a value"),
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
    with pytest.raises(WebApiError, match="unterminated literal"):
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
        ("primarycontactid($filter=name eq 'x)", "unterminated literal"),
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
ADMIN = Caller(next(user for user in USERS if user.name == "admin"), "System Administrator", "contoso")
NOW = datetime(2024, 2, 1, 12, 0, tzinfo=UTC)  # a Thursday: this week began on Sunday 28 January
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
        ("contains(name,'%')", ["Contoso", "Fabrikam", "O'Neil", "100% Wool"]),
        ("contains(name,'[%]')", ["100% Wool"]),
        ("startswith(name,'_ontoso')", ["Contoso"]),
        ("startswith(name,'[cf]')", ["Contoso", "Fabrikam"]),
        ("startswith(name,'[^cf]')", ["O'Neil", "100% Wool"]),
        ("endswith(name,'o')", ["Contoso"]),
        ("contains(name,'*')", []),
        ("contains(name,'[')", []),
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
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='numberofemployees',PropertyValues=['10','3'])",
            ["Contoso", "100% Wool"],
        ),
        (
            'Microsoft.Dynamics.CRM.Between(PropertyName=\'numberofemployees\',PropertyValues=["5","200"])',
            ["Contoso", "Fabrikam"],
        ),
        (
            'Microsoft.Dynamics.CRM.NotBetween(PropertyName=\'numberofemployees\',PropertyValues=["5","200"])',
            ["100% Wool"],
        ),
        ("Microsoft.Dynamics.CRM.Today(PropertyName='createdon')", ["100% Wool"]),
        ("Microsoft.Dynamics.CRM.Yesterday(PropertyName='createdon')", ["Contoso", "Fabrikam"]),
        ("Microsoft.Dynamics.CRM.Tomorrow(PropertyName='createdon')", []),
        (
            "Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon',PropertyValue=1)",
            ["Contoso", "Fabrikam", "100% Wool"],
        ),
        ("Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon',PropertyValue=0)", ["100% Wool"]),
        ("Microsoft.Dynamics.CRM.OlderThanXDays(PropertyName='createdon',PropertyValue=1)", ["O'Neil"]),
        ("Microsoft.Dynamics.CRM.LastXHours(PropertyName='createdon',PropertyValue=5)", []),
        ("Microsoft.Dynamics.CRM.LastXHours(PropertyName='createdon',PropertyValue=28)", ["Contoso", "100% Wool"]),
        ("Microsoft.Dynamics.CRM.OlderThanXHours(PropertyName='createdon',PropertyValue=28)", ["Fabrikam", "O'Neil"]),
        ("Microsoft.Dynamics.CRM.NextXDays(PropertyName='createdon',PropertyValue=30)", []),
        ("Microsoft.Dynamics.CRM.ThisWeek(PropertyName='createdon')", ["Contoso", "Fabrikam", "100% Wool"]),
        ("Microsoft.Dynamics.CRM.LastWeek(PropertyName='createdon')", []),
        ("Microsoft.Dynamics.CRM.ThisMonth(PropertyName='createdon')", ["100% Wool"]),
        ("Microsoft.Dynamics.CRM.LastMonth(PropertyName='createdon')", ["Contoso", "Fabrikam"]),
        (
            "Microsoft.Dynamics.CRM.LastXMonths(PropertyName='createdon',PropertyValue=2)",
            ["Contoso", "Fabrikam", "O'Neil", "100% Wool"],
        ),
        ("Microsoft.Dynamics.CRM.ThisYear(PropertyName='createdon')", ["Contoso", "Fabrikam", "100% Wool"]),
        ("Microsoft.Dynamics.CRM.LastYear(PropertyName='createdon')", ["O'Neil"]),
        ("Microsoft.Dynamics.CRM.NextYear(PropertyName='createdon')", []),
        ("Microsoft.Dynamics.CRM.On(PropertyName='createdon',PropertyValue='2024-01-31')", ["Contoso", "Fabrikam"]),
        (
            "Microsoft.Dynamics.CRM.OnOrAfter(PropertyName='createdon',PropertyValue='2024-01-31')",
            ["Contoso", "Fabrikam", "100% Wool"],
        ),
        (
            "Microsoft.Dynamics.CRM.OnOrBefore(PropertyName='createdon',PropertyValue='9999-12-31')",
            ["Contoso", "Fabrikam", "O'Neil", "100% Wool"],
        ),
        (
            "Microsoft.Dynamics.CRM.OnOrBefore(PropertyName='createdon',PropertyValue='2024-01-31')",
            ["Contoso", "Fabrikam", "O'Neil"],
        ),
        ("Microsoft.Dynamics.CRM.EqualUserId(PropertyName='parentaccountid') or name eq 'x'", []),
        (
            "Microsoft.Dynamics.CRM.NotEqualUserId(PropertyName='parentaccountid')",
            ["Contoso", "Fabrikam", "O'Neil", "100% Wool"],
        ),
    ],
)
def test_a_parsed_filter_selects_the_rows_it_means(
    accounts: sqlite3.Connection, text: str, expected: list[str]
) -> None:
    assert ACCOUNT is not None
    bound = FilterBinder(build_catalog(), ADMIN, NOW).bind(parse_filter(text), ACCOUNT)
    condition, parameters = compile_filter(bound, resolve)
    found = accounts.execute(f'SELECT "name" FROM account WHERE {condition} ORDER BY rowid', parameters).fetchall()  # noqa: S608
    assert [name for (name,) in found] == expected


@pytest.mark.parametrize("text", ["tolower(name) eq 'x'", "year(createdon) eq 2024", "substringof('a',name)"])
def test_an_odata_function_dataverse_lacks_answers_501(text: str) -> None:
    with pytest.raises(WebApiError) as caught:
        parse_filter(text)
    assert (caught.value.status, caught.value.code) == (501, RESOURCE_NOT_FOUND)
    assert "isn't supported in $filter" in caught.value.message


@pytest.mark.parametrize(
    ("text", "status", "code", "message"),
    [
        (
            "Microsoft.Dynamics.CRM.InFiscalYear(PropertyName='createdon',PropertyValue=2024)",
            501,
            RESOURCE_NOT_FOUND,
            "not emulated",
        ),
        (
            "Microsoft.Dynamics.CRM.Under(PropertyName='accountid',PropertyValue='x')",
            501,
            RESOURCE_NOT_FOUND,
            "not emulated",
        ),
        ("Microsoft.Dynamics.CRM.Foo(PropertyName='name')", 400, ODATA_ERROR, "An unknown function with name"),
        (
            "Microsoft.Dynamics.CRM.Today(PropertyName='nosuch')",
            400,
            "0x80041103",
            "'account' entity doesn't contain attribute with Name = 'nosuch'",
        ),
        ("Microsoft.Dynamics.CRM.Today(PropertyName='name')", 400, ODATA_ERROR, "applies to date and time columns"),
        ("Microsoft.Dynamics.CRM.Today(PropertyName='createdon',PropertyValue=1)", 400, ODATA_ERROR, "takes"),
        ("Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon')", 400, ODATA_ERROR, "PropertyValue=7"),
        ("Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon',PropertyValue='7')", 400, ODATA_ERROR, "Edm.Int64"),
        ("Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon',PropertyValue=-1)", 400, ODATA_ERROR, "Edm.Int64"),
        (
            "Microsoft.Dynamics.CRM.LastXYears(PropertyName='createdon',PropertyValue=99999999999)",
            400,
            ODATA_ERROR,
            "reaches beyond the dates",
        ),
        (
            "Microsoft.Dynamics.CRM.NextXDays(PropertyName='createdon',PropertyValue=99999999999)",
            400,
            ODATA_ERROR,
            "reaches beyond the dates",
        ),
        (
            "Microsoft.Dynamics.CRM.On(PropertyName='createdon',PropertyValue=2024)",
            400,
            ODATA_ERROR,
            "a date in quotes",
        ),
        (
            "Microsoft.Dynamics.CRM.On(PropertyName='createdon',PropertyValue='soon')",
            400,
            ODATA_ERROR,
            "a date in quotes",
        ),
        (
            "Microsoft.Dynamics.CRM.LastXHours(PropertyName='lastusedincampaign',PropertyValue=2)",
            400,
            ODATA_ERROR,
            "DateOnly behavior",
        ),
        (
            "Microsoft.Dynamics.CRM.Between(PropertyName='name',PropertyValues=['a','b'])",
            400,
            ODATA_ERROR,
            "number and",
        ),
        (
            "Microsoft.Dynamics.CRM.Between(PropertyName='revenue',PropertyValues=['1'])",
            400,
            ODATA_ERROR,
            "exactly two",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='numberofemployees',PropertyValues=['many'])",
            400,
            ODATA_ERROR,
            "'many'",
        ),
        ("Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[])", 400, ODATA_ERROR, "at least one value"),
        ("Microsoft.Dynamics.CRM.EqualUserId(PropertyName='name')", 400, ODATA_ERROR, "unique identifier"),
        (
            "contact_customer_accounts/any(c: Microsoft.Dynamics.CRM.Today(PropertyName='createdon'))",
            501,
            RESOURCE_NOT_FOUND,
            "inside a lambda expression",
        ),
        ("primarycontactid/any(c: c/fullname eq 'x')", 400, ODATA_ERROR, "single-valued navigation property"),
        ("contact_customer_accounts/fullname eq 'x'", 400, ODATA_ERROR, "collection-valued navigation property"),
        ("nosuch/fullname eq 'x'", 400, "0x0", "Could not find a property named 'nosuch'"),
        ("nosuch/any()", 400, "0x0", "Could not find a property named 'nosuch'"),
        (
            "primarycontactid/contact_customer_contacts/any(c: c/fullname eq 'x')",
            400,
            ODATA_ERROR,
            "nested in a lookup navigation property",
        ),
        ("msdyn_segmentid/msdyn_name eq 'x'", 501, RESOURCE_NOT_FOUND, "not part of the sandbox"),
    ],
)
def test_a_filter_the_service_would_refuse_gets_its_error(text: str, status: int, code: str, message: str) -> None:
    assert ACCOUNT is not None
    with pytest.raises(WebApiError) as caught:
        FilterBinder(build_catalog(), ADMIN, NOW).bind(parse_filter(text), ACCOUNT)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert message in caught.value.message


def test_every_query_function_the_reference_lists_is_emulated_or_answers_501() -> None:
    """The functions of "Filter rows using OData": none is left to look like a typo (an unknown function)."""
    documented = [
        "InFiscalPeriod",
        "InFiscalPeriodAndYear",
        "InFiscalYear",
        "InOrAfterFiscalPeriodAndYear",
        "InOrBeforeFiscalPeriodAndYear",
        "Last7Days",
        "LastFiscalPeriod",
        "LastFiscalYear",
        "LastMonth",
        "LastWeek",
        "LastXDays",
        "LastXFiscalPeriods",
        "LastXFiscalYears",
        "LastXHours",
        "LastXMonths",
        "LastXWeeks",
        "LastXYears",
        "LastYear",
        "Next7Days",
        "NextFiscalPeriod",
        "NextFiscalYear",
        "NextMonth",
        "NextWeek",
        "NextXDays",
        "NextXFiscalPeriods",
        "NextXFiscalYears",
        "NextXHours",
        "NextXMonths",
        "NextXWeeks",
        "NextXYears",
        "NextYear",
        "OlderThanXDays",
        "OlderThanXHours",
        "OlderThanXMinutes",
        "OlderThanXMonths",
        "OlderThanXWeeks",
        "OlderThanXYears",
        "On",
        "OnOrAfter",
        "OnOrBefore",
        "ThisFiscalPeriod",
        "ThisFiscalYear",
        "ThisMonth",
        "ThisWeek",
        "ThisYear",
        "Today",
        "Tomorrow",
        "Yesterday",
        "EqualBusinessId",
        "EqualUserId",
        "NotEqualBusinessId",
        "NotEqualUserId",
        "Above",
        "AboveOrEqual",
        "EqualUserOrUserHierarchy",
        "EqualUserOrUserHierarchyAndTeams",
        "EqualUserOrUserTeams",
        "EqualUserTeams",
        "NotUnder",
        "Under",
        "UnderOrEqual",
        "ContainValues",
        "DoesNotContainValues",
        "Between",
        "NotBetween",
        "In",
        "NotIn",
        "EqualUserLanguage",
        "Contains",
    ]
    for name in documented:
        try:
            require_known(name)
        except WebApiError as error:
            assert error.status == 501, name
