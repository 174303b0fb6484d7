"""Dataverse query functions in `$filter`: what each one means, as plain comparisons on one column.

`Microsoft.Dynamics.CRM.<Name>(PropertyName='createdon',PropertyValue=7)` names a column by its logical name
and takes, depending on the function, no value, `PropertyValue` (an Edm.Int64 count or an Edm.String date) or
`PropertyValues` (a `Collection(Edm.String)`), as the Web API query function reference gives them. Each function
becomes a range or comparison on that column, computed from the environment's clock in UTC (the service uses the
caller's time zone; the sandbox's callers all live in UTC). Weeks run Sunday through Saturday, as the FetchXML
condition operator reference says of `last-week`. The day-based "last"/"older than" functions split time at the
start of a day: `LastXDays(X)` runs from midnight X days ago up to now, `OlderThanXDays(X)` before that midnight.

Functions the service has and the sandbox does not (fiscal periods, teams, the user and record hierarchies,
full-text `Contains`, choice-column values) answer 501, as the service answers what it does not implement.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final

from ._catalog import Column
from ._errors import bad_request, not_implemented
from ._expression import And, Comparison, ComparisonOperator, Expression, Membership, Or, Property, QueryFunction, Value
from ._tables import LANGUAGE_CODE  # every sandbox user's language: English (United States)

NAMESPACE: Final = "Microsoft.Dynamics.CRM."
_UNSUPPORTED: Final = frozenset(
    {
        "InFiscalPeriod",
        "InFiscalPeriodAndYear",
        "InFiscalYear",
        "InOrAfterFiscalPeriodAndYear",
        "InOrBeforeFiscalPeriodAndYear",
        "LastFiscalPeriod",
        "LastFiscalYear",
        "LastXFiscalPeriods",
        "LastXFiscalYears",
        "NextFiscalPeriod",
        "NextFiscalYear",
        "NextXFiscalPeriods",
        "NextXFiscalYears",
        "ThisFiscalPeriod",
        "ThisFiscalYear",
        "Above",
        "AboveOrEqual",
        "Under",
        "UnderOrEqual",
        "NotUnder",
        "EqualUserOrUserHierarchy",
        "EqualUserOrUserHierarchyAndTeams",
        "EqualUserOrUserTeams",
        "EqualUserTeams",
        "ContainValues",
        "DoesNotContainValues",
        "Contains",
    }
)

# (start, end): a half-open range of moments; None leaves that side open.
Span = tuple[datetime | None, datetime | None]


@dataclass(frozen=True)
class Moment:
    """When, and for whom, a filter is evaluated: what the relative functions are relative to."""

    now: datetime
    user_id: str
    business_unit_id: str

    @property
    def today(self) -> datetime:
        return self.now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    @property
    def week(self) -> datetime:
        """The start of this week: the last Sunday, today included."""
        return self.today - timedelta(days=(self.today.weekday() + 1) % 7)

    @property
    def month(self) -> datetime:
        return self.today.replace(day=1)

    @property
    def year(self) -> datetime:
        return self.today.replace(month=1, day=1)


def _months(moment: datetime, count: int) -> datetime:
    """`moment` moved by `count` calendar months, the day kept where the month has it."""
    index = moment.year * 12 + moment.month - 1 + count
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


_DAY: Final = timedelta(days=1)
_PERIODS: Final[dict[str, Callable[[Moment], Span]]] = {
    "Today": lambda m: (m.today, m.today + _DAY),
    "Yesterday": lambda m: (m.today - _DAY, m.today),
    "Tomorrow": lambda m: (m.today + _DAY, m.today + 2 * _DAY),
    "Last7Days": lambda m: (m.today - 7 * _DAY, m.now),
    "Next7Days": lambda m: (m.now, m.today + 8 * _DAY),
    "ThisWeek": lambda m: (m.week, m.week + 7 * _DAY),
    "LastWeek": lambda m: (m.week - 7 * _DAY, m.week),
    "NextWeek": lambda m: (m.week + 7 * _DAY, m.week + 14 * _DAY),
    "ThisMonth": lambda m: (m.month, _months(m.month, 1)),
    "LastMonth": lambda m: (_months(m.month, -1), m.month),
    "NextMonth": lambda m: (_months(m.month, 1), _months(m.month, 2)),
    "ThisYear": lambda m: (m.year, _months(m.year, 12)),
    "LastYear": lambda m: (_months(m.year, -12), m.year),
    "NextYear": lambda m: (_months(m.year, 12), _months(m.year, 24)),
}
# The unit of each counted function, as a function of (start, count) -> moment `count` units later.
_UNITS: Final[dict[str, Callable[[datetime, int], datetime]]] = {
    "Minutes": lambda start, count: start + timedelta(minutes=count),
    "Hours": lambda start, count: start + timedelta(hours=count),
    "Days": lambda start, count: start + timedelta(days=count),
    "Weeks": lambda start, count: start + timedelta(weeks=count),
    "Months": _months,
    "Years": lambda start, count: _months(start, 12 * count),
}
_CLOCK_UNITS: Final = frozenset({"Minutes", "Hours"})  # counted from now, not from midnight
_COUNTED: Final = {
    **{f"LastX{unit}": ("last", unit) for unit in ("Hours", "Days", "Weeks", "Months", "Years")},
    **{f"NextX{unit}": ("next", unit) for unit in ("Hours", "Days", "Weeks", "Months", "Years")},
    **{f"OlderThanX{unit}": ("older", unit) for unit in _UNITS},
}
_DATES: Final = ("On", "OnOrAfter", "OnOrBefore")
_IDS: Final[dict[str, tuple[ComparisonOperator, Callable[[Moment], Value]]]] = {
    "EqualUserId": ("eq", lambda m: uuid.UUID(m.user_id)),
    "NotEqualUserId": ("ne", lambda m: uuid.UUID(m.user_id)),
    "EqualBusinessId": ("eq", lambda m: uuid.UUID(m.business_unit_id)),
    "NotEqualBusinessId": ("ne", lambda m: uuid.UUID(m.business_unit_id)),
}
_KNOWN: Final = frozenset(
    {"In", "NotIn", "Between", "NotBetween", "EqualUserLanguage", *_PERIODS, *_COUNTED, *_DATES, *_IDS}
)


def _counted_span(direction: str, unit: str, count: int, moment: Moment) -> Span:
    step = _UNITS[unit]
    start = moment.now if unit in _CLOCK_UNITS else moment.today
    if direction == "last":
        return step(start, -count), moment.now
    if direction == "next":
        return moment.now, step(start, count) if unit in _CLOCK_UNITS else step(start, count) + _DAY
    return None, step(start, -count)


def _span(prop: Property, span: Span, *, end_inclusive: bool = False) -> Expression:
    start, end = span
    parts: list[Expression] = []
    if start is not None:
        parts.append(Comparison("ge", prop, start))
    if end is not None:
        parts.append(Comparison("le" if end_inclusive else "lt", prop, end))
    if not parts:
        return Comparison("ne", prop, None)  # every date there is
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _usage(function: QueryFunction, parameters: str) -> str:
    return f"{NAMESPACE}{function.name}(PropertyName='{function.property}'{parameters})"


def _arguments(function: QueryFunction, expected: tuple[str, ...], example: str) -> list[Value | tuple[Value, ...]]:
    """The function's values in `expected` order; any other parameter, or a missing one, is a 400."""
    given = dict(function.arguments)
    if set(given) != set(expected):
        raise bad_request(f"{NAMESPACE}{function.name} takes {_usage(function, example)}.")
    return [given[name] for name in expected]


def _count(function: QueryFunction) -> int:
    (value,) = _arguments(function, ("PropertyValue",), ",PropertyValue=7")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_request(
            f"The PropertyValue of {NAMESPACE}{function.name} is an Edm.Int64 count, such as PropertyValue=7."
        )
    return value


def _day(function: QueryFunction) -> datetime:
    (value,) = _arguments(function, ("PropertyValue",), ",PropertyValue='2024-01-31'")
    try:
        if not isinstance(value, str):
            raise ValueError
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(
            f"The PropertyValue of {NAMESPACE}{function.name} is a date in quotes, such as PropertyValue='2024-01-31'."
        ) from None
    return (
        (moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        .astimezone(UTC)
        .replace(hour=0, minute=0, second=0, microsecond=0)
    )


def text_value(column: Column, text: Value) -> Value:
    """A `Collection(Edm.String)` member as the typed value its column holds; a 400 when it is not one."""
    if not isinstance(text, str):
        return text
    value = text.strip()
    try:
        match column.kind:
            case "integer" | "choice":
                return int(value)
            case "decimal":
                return Decimal(value)
            case "boolean":
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return value.lower() in ("true", "1")
            case "datetime":
                if len(value) == 10:
                    return date.fromisoformat(value)
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            case "guid":
                return uuid.UUID(value.strip("{}"))
    except (ValueError, InvalidOperation):
        raise bad_request(f"The value '{text}' is not valid for the column '{column.logical_name}'.") from None
    return text


def _require_kind(function: QueryFunction, column: Column, kinds: tuple[str, ...], described: str) -> None:
    if column.kind not in kinds:
        raise bad_request(f"{NAMESPACE}{function.name} applies to {described}; '{column.logical_name}' is not one.")


def require_known(name: str) -> None:
    """Refuse a function the service does not have (400), or one the sandbox does not emulate (501)."""
    if name in _UNSUPPORTED:
        raise not_implemented(f"The query function {NAMESPACE}{name} is not emulated by the sandbox.")
    if name not in _KNOWN:
        raise bad_request(
            f"An unknown function with name '{NAMESPACE}{name}' was found. This may also be a function import or a "
            "key lookup on a navigation property, which is not allowed."
        )


def expand_function(function: QueryFunction, column: Column, prop: Property, moment: Moment) -> Expression:
    """The comparisons `function` stands for on `column` (reached as `prop`), at `moment`."""
    name = function.name
    require_known(name)
    if name in ("In", "NotIn"):
        (values,) = _arguments(function, ("PropertyValues",), ",PropertyValues=['a','b']")
        if not isinstance(values, tuple) or not values:
            raise bad_request(f"{NAMESPACE}{name} needs at least one value, as in PropertyValues=['a','b'].")
        return Membership(prop, tuple(text_value(column, value) for value in values), negated=name == "NotIn")
    if name in ("Between", "NotBetween"):
        _require_kind(function, column, ("integer", "decimal", "datetime"), "number and date and time columns")
        (values,) = _arguments(function, ("PropertyValues",), ',PropertyValues=["5","2000"]')
        if not isinstance(values, tuple) or len(values) != 2:
            raise bad_request(f'{NAMESPACE}{name} needs exactly two values, as in PropertyValues=["5","2000"].')
        low, high = (text_value(column, value) for value in values)
        if name == "Between":
            return And((Comparison("ge", prop, low), Comparison("le", prop, high)))
        return Or((Comparison("lt", prop, low), Comparison("gt", prop, high)))
    if name in _IDS:
        _require_kind(function, column, ("guid",), "unique identifier and lookup columns")
        _arguments(function, (), "")
        operator, value = _IDS[name]
        return Comparison(operator, prop, value(moment))
    if name == "EqualUserLanguage":
        _require_kind(function, column, ("integer",), "whole number (language) columns")
        _arguments(function, (), "")
        return Comparison("eq", prop, LANGUAGE_CODE)
    if name in _PERIODS or name in _COUNTED or name in _DATES:
        _require_kind(function, column, ("datetime",), "date and time columns")
    if name in _PERIODS:
        _arguments(function, (), "")
        return _span(prop, _PERIODS[name](moment), end_inclusive=name == "Last7Days")
    if name in _COUNTED:
        direction, unit = _COUNTED[name]
        if unit in _CLOCK_UNITS and column.date_only:
            raise bad_request(
                f"{NAMESPACE}{name} can't be applied to '{column.logical_name}': the column uses the DateOnly "
                "behavior, and operators on hours and minutes don't apply to it."
            )
        try:
            span = _counted_span(direction, unit, _count(function), moment)
        except (OverflowError, ValueError):
            raise bad_request(
                f"The PropertyValue of {NAMESPACE}{name} reaches beyond the dates a column can hold."
            ) from None
        return _span(prop, span, end_inclusive=direction == "last")
    if name in _DATES:
        day = _day(function)
        try:
            following = day + _DAY
        except OverflowError:
            following = None  # the last day a date can hold: nothing comes after it
        spans: dict[str, Span] = {"On": (day, following), "OnOrAfter": (day, None), "OnOrBefore": (None, following)}
        return _span(prop, spans[name])
    raise AssertionError(f"query function {name} is known but not expanded")
