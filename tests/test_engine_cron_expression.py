"""Tests for iii_sync.engine._cron_expression: the engine's cron dialect."""

import datetime
import itertools
from typing import List, Optional

import pytest

from iii_sync.engine._cron_expression import (
    CronSyntaxError,
    croniter_expression,
    next_fire,
    parse_expression,
)

UTC = datetime.timezone.utc
MONDAY = datetime.datetime(2024, 1, 1, tzinfo=UTC)  # 2024-01-01 was a Monday


def fires(
    expression: str, after: datetime.datetime, count: int
) -> List[datetime.datetime]:
    compiled = croniter_expression(parse_expression(expression))
    found = []
    moment: Optional[datetime.datetime] = after
    for _ in range(count):
        assert moment is not None
        moment = next_fire(compiled, moment)
        if moment is None:
            break
        found.append(moment)
    return found


# --- refusals ---------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "expression",
    [
        "0 0 0 * * 0",  # days of week start at 1 (Sunday)
        "0 0 0 * * 8",
        "60 * * * * *",
        "* 60 * * * *",
        "* * 24 * * *",
        "0 0 0 0 * *",
        "0 0 0 32 * *",
        "0 0 0 * 13 *",
        "0 0 0 * * * 1969",
        "0 0 0 * * * 2101",
        "0 0 0 L * *",
        "0 0 0 * * MON#1",
        "0 0 0 15W * *",
        "0 0 0 * * 5-2",
        "0 0 0 * * Wed/2",
        "*/0 * * * * *",
        "*/61 * * * * *",
        "? * * * * *",
        "0 0 0 * * Funday",
        "0 0 0 Mon * *",
        "H * * * * *",
        "1,,2 * * * * *",
        "* * * * * * * *",
        "@annually",
        "@every 5s",
    ],
)
def test_expressions_the_engine_refuses(expression: str) -> None:
    with pytest.raises(CronSyntaxError):
        parse_expression(expression)


@pytest.mark.timeout(10)
def test_five_field_crontab_names_the_field_count() -> None:
    with pytest.raises(CronSyntaxError) as info:
        parse_expression("*/5 * * * *")
    assert "6 or 7 fields" in str(info.value)


# --- the dialect ------------------------------------------------------------


@pytest.mark.timeout(10)
def test_six_fields_are_seconds_first() -> None:
    assert fires("30 15 10 * * *", MONDAY, 2) == [
        datetime.datetime(2024, 1, 1, 10, 15, 30, tzinfo=UTC),
        datetime.datetime(2024, 1, 2, 10, 15, 30, tzinfo=UTC),
    ]
    assert fires("*/20 * * * * *", MONDAY, 3) == [
        datetime.datetime(2024, 1, 1, 0, 0, 20, tzinfo=UTC),
        datetime.datetime(2024, 1, 1, 0, 0, 40, tzinfo=UTC),
        datetime.datetime(2024, 1, 1, 0, 1, 0, tzinfo=UTC),
    ]


@pytest.mark.timeout(10)
def test_seventh_field_is_the_year() -> None:
    assert fires("0 0 12 1 1 * 2030", MONDAY, 2) == [
        datetime.datetime(2030, 1, 1, 12, tzinfo=UTC)
    ]
    assert fires("0 0 0 1 1 * 2026-2030/2", MONDAY, 5) == [
        datetime.datetime(2026, 1, 1, tzinfo=UTC),
        datetime.datetime(2028, 1, 1, tzinfo=UTC),
        datetime.datetime(2030, 1, 1, tzinfo=UTC),
    ]
    # A year that has passed, or an impossible date, never fires.
    assert fires("0 0 0 1 1 * 1999", MONDAY, 1) == []
    assert fires("0 0 0 31 2 *", MONDAY, 1) == []


@pytest.mark.timeout(10)
def test_days_of_week_count_from_sunday_as_one() -> None:
    sunday = datetime.datetime(2024, 1, 7, tzinfo=UTC)
    assert fires("0 0 0 * * 1", MONDAY, 1) == [sunday]
    assert fires("0 0 0 * * Sun", MONDAY, 1) == [sunday]
    assert fires("0 0 0 * * 7", MONDAY, 1) == [
        datetime.datetime(2024, 1, 6, tzinfo=UTC)
    ]
    assert fires("0 0 0 * * 2", MONDAY, 1) == [
        datetime.datetime(2024, 1, 8, tzinfo=UTC)
    ]
    assert fires("@weekly", MONDAY, 1) == [sunday]
    assert parse_expression("0 0 0 ? * Mon-Thurs/2")[5] == {2, 4}
    assert parse_expression("0 0 0 ? * MONDAY,friday")[5] == {2, 6}


@pytest.mark.timeout(10)
def test_day_of_month_and_day_of_week_must_both_match() -> None:
    # Friday the 13th, not "every 13th and every Friday" as crontab reads it.
    assert fires("0 0 0 13 * Fri", MONDAY, 3) == [
        datetime.datetime(2024, 9, 13, tzinfo=UTC),
        datetime.datetime(2024, 12, 13, tzinfo=UTC),
        datetime.datetime(2025, 6, 13, tzinfo=UTC),
    ]


@pytest.mark.timeout(10)
def test_field_forms() -> None:
    sets = parse_expression("1,5-7,50/5 */15 3-4 ? Feb-Apr,Dec *")
    assert sets[0] == {1, 5, 6, 7, 50, 55}
    assert sets[1] == {0, 15, 30, 45}
    assert sets[2] == {3, 4}
    assert sets[3] == set(range(1, 32))
    assert sets[4] == {2, 3, 4, 12}
    assert sets[6] == set(range(1970, 2101))
    assert parse_expression("0 0 0 1 january *")[4] == {1}
    assert parse_expression("0 0 10-20/4 * * *")[2] == {10, 14, 18}


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "shorthand,expected",
    [
        ("@yearly", datetime.datetime(2025, 1, 1, tzinfo=UTC)),
        ("@monthly", datetime.datetime(2024, 2, 1, tzinfo=UTC)),
        ("@daily", datetime.datetime(2024, 1, 2, tzinfo=UTC)),
        ("@hourly", datetime.datetime(2024, 1, 1, 1, tzinfo=UTC)),
    ],
)
def test_shorthands(shorthand: str, expected: datetime.datetime) -> None:
    assert fires(shorthand, MONDAY, 1) == [expected]


def reference_fires(
    expression: str, after: datetime.datetime, days: int
) -> List[datetime.datetime]:
    """Every match in a window, by brute force over the parsed sets."""
    seconds, minutes, hours, doms, months, dows, years = parse_expression(expression)
    found = []
    for offset in range(days):
        day = after.date() + datetime.timedelta(days=offset)
        weekday = day.isoweekday() % 7 + 1  # Sunday = 1 ... Saturday = 7
        if day.year not in years or day.month not in months:
            continue
        if day.day not in doms or weekday not in dows:
            continue
        for h, m, s in itertools.product(
            sorted(hours), sorted(minutes), sorted(seconds)
        ):
            moment = datetime.datetime(
                day.year, day.month, day.day, h, m, s, tzinfo=UTC
            )
            if moment > after:
                found.append(moment)
    return found


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "expression",
    [
        "0 0 9 * * 2-6",
        "0 */30 8-10 1,15 * *",
        "15 0 0 ? * Sat,Sun",
        "0 0 0 1-7 * 2",
        "0 0 0 29 Feb *",
        "0 0 12 * Mar-May/2 1/3",
    ],
)
def test_croniter_agrees_with_a_brute_force_reading(expression: str) -> None:
    expected = reference_fires(expression, MONDAY, 800)[:40]
    assert expected, "the reference window is too short"
    assert fires(expression, MONDAY, len(expected)) == expected
