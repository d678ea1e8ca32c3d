"""The engine's cron dialect: parsing, croniter translation, next fire times.

A cron binding's ``config.expression`` uses the engine's cron dialect (the Rust
``cron`` crate): six or seven fields, seconds first, in UTC::

    sec  min  hour  day-of-month  month  day-of-week  [year]

It differs from crontab in ways that matter: days of the week count from
``1`` = Sunday to ``7`` = Saturday, a day must match both the day-of-month and
the day-of-week fields, ``?`` means "any" in those two fields, and only
``@yearly``, ``@monthly``, ``@weekly``, ``@daily`` and ``@hourly`` are known
shorthands. Five-field crontab lines are refused.

This module parses the dialect into sets of allowed values and hands
``croniter`` an equivalent expression in its own layout (fields reordered,
days of the week renumbered, every set written out), so croniter only does
the calendar arithmetic. Known shortcoming: the ``<detail>`` part of an
``Invalid cron expression`` message is worded here, not copied from the crate.
"""

import datetime
import re
from typing import FrozenSet, Mapping, Optional, Set, Tuple

from croniter import CroniterBadDateError, croniter  # type: ignore[import-untyped]

# croniter's year field ends at 2099; the crate's at 2100.
_CRONITER_LAST_YEAR = 2099

_NUMBER = re.compile(r"[0-9]+\Z")
_NAME = re.compile(r"[A-Za-z]+\Z")

_MONTH_NAMES = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3,
    "apr": 4, "april": 4, "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7,
    "aug": 8, "august": 8, "sep": 9, "september": 9, "oct": 10,
    "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12,
}  # fmt: skip

_DAY_NAMES = {
    "sun": 1, "sunday": 1, "mon": 2, "monday": 2, "tue": 3, "tues": 3,
    "tuesday": 3, "wed": 4, "wednesday": 4, "thu": 5, "thurs": 5,
    "thursday": 5, "fri": 6, "friday": 6, "sat": 7, "saturday": 7,
}  # fmt: skip

_SHORTHANDS = {
    "@yearly": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 1",
    "@daily": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}


class _Field:
    """One position of a cron expression: its name, bounds and spellings."""

    __slots__ = ("allows_any", "high", "low", "name", "names")

    def __init__(
        self,
        name: str,
        low: int,
        high: int,
        names: Optional[Mapping[str, int]] = None,
        allows_any: bool = False,
    ) -> None:
        self.name = name
        self.low = low
        self.high = high
        self.names = names or {}
        self.allows_any = allows_any

    def every(self) -> Set[int]:
        return set(range(self.low, self.high + 1))


_FIELDS = (
    _Field("seconds", 0, 59),
    _Field("minutes", 0, 59),
    _Field("hours", 0, 23),
    _Field("days of month", 1, 31, allows_any=True),
    _Field("months", 1, 12, names=_MONTH_NAMES),
    _Field("days of week", 1, 7, names=_DAY_NAMES, allows_any=True),
    _Field("years", 1970, 2100),
)


class CronSyntaxError(ValueError):
    """An expression the engine's cron dialect refuses; ``str()`` is the detail."""


def parse_expression(expression: str) -> Tuple[FrozenSet[int], ...]:
    """Parses an expression into seven sets of allowed values, seconds first.

    Callable from any thread; does not block.

    Raises:
        CronSyntaxError: the expression is not valid in the engine's dialect.
    """
    text = _SHORTHANDS.get(expression.strip(), expression)
    fields = text.split()
    if len(fields) not in (6, 7):
        raise CronSyntaxError(
            "expected 6 or 7 fields (seconds first, optional year), found %d"
            % len(fields)
        )
    if len(fields) == 6:
        fields.append("*")
    return tuple(frozenset(_parse_field(f, spec)) for f, spec in zip(fields, _FIELDS))


def _parse_field(text: str, field: _Field) -> Set[int]:
    values: Set[int] = set()
    for item in text.split(","):
        values |= _parse_item(item, field)

    # Every value is range-checked, including the ends of a step's base.
    for value in sorted(values):
        _check_bounds(value, field)
    return values


def _parse_item(item: str, field: _Field) -> Set[int]:
    if "/" not in item:
        return _parse_single(item, field, allow_name=True)
    base, _, step_text = item.partition("/")
    if not _NUMBER.match(step_text):
        raise CronSyntaxError("%s: bad step in %r" % (field.name, item))
    step = int(step_text)
    if step == 0:
        raise CronSyntaxError("%s: a step cannot be zero" % field.name)
    if step > field.high:
        raise CronSyntaxError(
            "%s: step %d is larger than %d" % (field.name, step, field.high)
        )

    # A single number as the base means "from here to the end of the range".
    if _NUMBER.match(base):
        start = _check_bounds(int(base), field)
        return set(range(start, field.high + 1, step))
    return set(sorted(_parse_single(base, field, allow_name=False))[::step])


def _parse_single(text: str, field: _Field, allow_name: bool) -> Set[int]:
    if text == "*" or (text == "?" and field.allows_any):
        return field.every()
    if _NUMBER.match(text):
        return {int(text)}
    if allow_name and _NAME.match(text):
        return {_ordinal_of(text, field)}
    first, dash, last = text.partition("-")
    if dash and _NUMBER.match(first) and _NUMBER.match(last):
        return _span(int(first), int(last), field)
    if dash and _NAME.match(first) and _NAME.match(last):
        return _span(_ordinal_of(first, field), _ordinal_of(last, field), field)
    raise CronSyntaxError("%s: cannot read %r" % (field.name, text))


def _span(first: int, last: int, field: _Field) -> Set[int]:
    _check_bounds(first, field)
    _check_bounds(last, field)
    if first > last:
        raise CronSyntaxError(
            "%s: range %d-%d runs backwards" % (field.name, first, last)
        )
    return set(range(first, last + 1))


def _ordinal_of(name: str, field: _Field) -> int:
    if not field.names:
        raise CronSyntaxError(
            "%s: names such as %r are not allowed" % (field.name, name)
        )
    try:
        return field.names[name.lower()]
    except KeyError:
        raise CronSyntaxError("%s: unknown name %r" % (field.name, name)) from None


def _check_bounds(value: int, field: _Field) -> int:
    if not field.low <= value <= field.high:
        raise CronSyntaxError(
            "%s: %d is outside %d-%d" % (field.name, value, field.low, field.high)
        )
    return value


def croniter_expression(sets: Tuple[FrozenSet[int], ...]) -> Optional[str]:
    """Writes parsed sets as a croniter expression, or None if nothing can match.

    croniter's layout is ``min hour dom month dow sec year`` with Sunday = 0.
    """
    seconds, minutes, hours, days, months, weekdays, years = sets
    weekdays = frozenset(day - 1 for day in weekdays)
    years = frozenset(year for year in years if year <= _CRONITER_LAST_YEAR)
    if not years:
        return None
    parts = (
        _render(minutes, 0, 59),
        _render(hours, 0, 23),
        _render(days, 1, 31),
        _render(months, 1, 12),
        _render(weekdays, 0, 6),
        _render(seconds, 0, 59),
        _render(years, 1970, _CRONITER_LAST_YEAR),
    )
    return " ".join(parts)


def _render(values: FrozenSet[int], low: int, high: int) -> str:
    if len(values) == high - low + 1:
        return "*"
    return ",".join(str(value) for value in sorted(values))


def next_fire(
    expression: Optional[str], after: datetime.datetime
) -> Optional[datetime.datetime]:
    """The first matching second strictly after ``after``, or None if none."""
    if expression is None:
        return None
    try:
        schedule = croniter(expression, after, ret_type=datetime.datetime, day_or=False)
        return schedule.get_next(datetime.datetime)  # type: ignore[no-any-return]
    except CroniterBadDateError:
        return None
