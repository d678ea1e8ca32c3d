"""The ``cron`` trigger provider of the embedded engine.

A binding's ``config.expression`` uses the engine's cron dialect (the Rust
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
import heapq
import logging
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Set, Tuple

from croniter import CroniterBadDateError, croniter  # type: ignore[import-untyped]

from ._providers import (
    Binding,
    CallFailed,
    FunctionCaller,
    InProcessProvider,
    TriggerRejected,
)

_log = logging.getLogger(__name__)

# Fires run on a small pool so the scheduler thread never blocks on a call.
DEFAULT_FIRE_WORKERS = 8

# How long stop() waits for the scheduler and for fires already running.
STOP_TIMEOUT = 2.0

_UTC = datetime.timezone.utc

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


def rfc3339(moment: datetime.datetime, nanos: Optional[int] = None) -> str:
    """Formats a UTC time the way the engine does (``+00:00``, 0/3/6/9 digits)."""
    if nanos is None:
        nanos = moment.microsecond * 1000
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos % 1000000 == 0 and nanos:
        text += ".%03d" % (nanos // 1000000)
    elif nanos % 1000 == 0 and nanos:
        text += ".%06d" % (nanos // 1000)
    elif nanos:
        text += ".%09d" % nanos
    return text + "+00:00"


def _now() -> Tuple[datetime.datetime, int]:
    """The current UTC time and its nanoseconds within the second."""
    stamp = time.time_ns()
    seconds, nanos = divmod(stamp, 1000000000)
    moment = datetime.datetime.fromtimestamp(seconds, _UTC)
    return moment.replace(microsecond=nanos // 1000), nanos


class _Job:
    """One registered binding and its next due time."""

    __slots__ = ("binding", "busy", "condition_function_id", "expression")

    def __init__(self, binding: Binding, expression: Optional[str]) -> None:
        self.binding = binding
        self.expression = expression
        config = binding.config if isinstance(binding.config, dict) else {}
        condition = config.get("condition_function_id")
        self.condition_function_id = condition if isinstance(condition, str) else None
        self.busy = False


class CronProvider(InProcessProvider):
    """Fires bindings of trigger type ``cron`` on their schedule.

    One scheduler thread (``iii-cron-scheduler``) sleeps on an event until the
    earliest due job, then hands each due job to a small pool of fire threads.
    A job whose previous fire is still running skips the tick, as the engine's
    one-task-per-job loop does. Each fire calls the optional
    ``condition_function_id`` first (same namespace, same payload, no metadata;
    a result of exactly ``false`` or an error skips the handler), then the
    target with the binding's metadata. The return value is ignored; errors are
    logged.

    Args:
        caller: The engine's in-process call path.
        fire_workers: How many fires may run at once.
    """

    trigger_type = "cron"

    def __init__(
        self, caller: FunctionCaller, fire_workers: int = DEFAULT_FIRE_WORKERS
    ) -> None:
        self._caller = caller
        self._fire_workers = fire_workers

        # Guards _jobs, _queue, _running and every _Job.busy flag.
        self._jobs_lock = threading.Lock()
        self._jobs: Dict[str, _Job] = {}
        self._queue: List[Tuple[datetime.datetime, int, _Job]] = []
        self._sequence = 0
        self._running: Set[Future[None]] = set()

        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pool: Optional[ThreadPoolExecutor] = None

    def register(self, binding: Binding) -> None:
        """Validates the expression and schedules the job.

        Callable from any thread; does not block.

        Raises:
            TriggerRejected: no expression, a duplicate binding id, or an
                expression the engine's dialect refuses.
        """
        config = binding.config if isinstance(binding.config, dict) else {}
        expression = config.get("expression")
        if not isinstance(expression, str) or not expression:
            raise TriggerRejected("Cron expression is required")
        with self._jobs_lock:
            known = binding.id in self._jobs
        if known:
            raise TriggerRejected("Cron job '%s' is already registered" % binding.id)

        # Parsing happens outside the lock; the id is checked again on insert.
        job = _Job(binding, self._compile(expression))
        self._insert(job)
        _log.debug(
            "cron job %s (%s) -> %s", binding.id, expression, binding.function_id
        )

    def unregister(self, binding: Binding) -> None:
        """Stops scheduling the job with this binding's id; unknown ids are ignored.

        Callable from any thread; does not block. A fire already running ends
        on its own.
        """
        with self._jobs_lock:
            job = self._jobs.pop(binding.id, None)
        if job is not None:
            _log.debug("cron job %s removed", binding.id)

    def start(self) -> None:
        """Starts the scheduler thread. Call once, from any thread; does not block."""
        self._pool = ThreadPoolExecutor(
            self._fire_workers, thread_name_prefix="iii-cron-fire"
        )
        self._thread = threading.Thread(
            target=self._run, name="iii-cron-scheduler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops the scheduler and waits briefly for running fires.

        Call once, from any thread other than a fire thread. Blocks for at most
        about ``2 * STOP_TIMEOUT`` seconds; a call still running after that is
        left to finish on its own.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        if self._pool is None:
            return

        # Fires that have not started are dropped; running ones get a grace period.
        with self._jobs_lock:
            running = list(self._running)
        for future in running:
            future.cancel()
        self._pool.shutdown(wait=False)
        wait_futures(running, timeout=STOP_TIMEOUT)

    def _compile(self, expression: str) -> Optional[str]:
        try:
            return croniter_expression(parse_expression(expression))
        except CronSyntaxError as exc:
            raise TriggerRejected(
                "Invalid cron expression '%s': %s" % (expression, exc)
            ) from None

    def _insert(self, job: _Job) -> None:
        due = next_fire(job.expression, _now()[0])
        with self._jobs_lock:
            if job.binding.id in self._jobs:
                raise TriggerRejected(
                    "Cron job '%s' is already registered" % job.binding.id
                )
            self._jobs[job.binding.id] = job
            self._push(job, due)
        self._wake.set()

    def _push(self, job: _Job, due: Optional[datetime.datetime]) -> None:
        # Called with _jobs_lock held. A job with no future match drops out.
        if due is None:
            _log.warning(
                "cron job %s has no upcoming time; it will not fire", job.binding.id
            )
            return
        self._sequence += 1
        heapq.heappush(self._queue, (due, self._sequence, job))

    def _run(self) -> None:
        while not self._stopping.is_set():
            delay = self._dispatch_due()
            self._wake.wait(delay)
            self._wake.clear()

    def _dispatch_due(self) -> Optional[float]:
        """Starts every due job; returns the seconds until the next one."""
        now = _now()[0]
        due_jobs: List[Tuple[_Job, datetime.datetime]] = []
        with self._jobs_lock:
            while self._queue and self._queue[0][0] <= now:
                scheduled, _, job = heapq.heappop(self._queue)
                if self._jobs.get(job.binding.id) is not job:
                    continue  # unregistered (or replaced) since it was queued
                self._push(job, next_fire(job.expression, now))
                if job.busy:
                    _log.debug(
                        "cron job %s still running; tick skipped", job.binding.id
                    )
                    continue
                job.busy = True
                due_jobs.append((job, scheduled))
            delay = (self._queue[0][0] - now).total_seconds() if self._queue else None

        for job, scheduled in due_jobs:
            self._submit(job, scheduled)
        return delay

    def _submit(self, job: _Job, scheduled: datetime.datetime) -> None:
        assert self._pool is not None
        try:
            future = self._pool.submit(self._fire, job, scheduled)
        except RuntimeError:  # the pool is shutting down
            self._release(job)
            return
        with self._jobs_lock:
            self._running.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: "Future[None]") -> None:
        with self._jobs_lock:
            self._running.discard(future)

    def _release(self, job: _Job) -> None:
        with self._jobs_lock:
            job.busy = False

    def _fire(self, job: _Job, scheduled: datetime.datetime) -> None:
        try:
            moment, nanos = _now()
            payload = {
                "trigger": "cron",
                "job_id": job.binding.id,
                "scheduled_time": rfc3339(scheduled),
                "actual_time": rfc3339(moment, nanos),
            }
            if self._condition_allows(job, payload):
                self._call_target(job, payload)
        except Exception:  # noqa: BLE001 - a broken call path must not stop the job
            _log.exception("cron job %s: fire failed", job.binding.id)
        finally:
            self._release(job)

    def _condition_allows(self, job: _Job, payload: Dict[str, Any]) -> bool:
        if job.condition_function_id is None:
            return True
        binding = job.binding
        try:
            verdict = self._caller.call(
                job.condition_function_id, payload, namespace=binding.namespace
            )
        except CallFailed as exc:
            _log.error(
                "cron job %s: condition %s failed: %s",
                binding.id, job.condition_function_id, exc,
            )  # fmt: skip
            return False
        if verdict is False:
            _log.debug("cron job %s: condition returned false; skipped", binding.id)
            return False
        return True

    def _call_target(self, job: _Job, payload: Dict[str, Any]) -> None:
        binding = job.binding
        _log.debug("cron job %s fires %s", binding.id, binding.function_id)
        try:
            self._caller.call(
                binding.function_id,
                payload,
                namespace=binding.namespace,
                metadata=binding.metadata,
            )
        except CallFailed as exc:
            _log.error(
                "cron job %s: %s::%s failed: %s",
                binding.id, binding.namespace, binding.function_id, exc,
            )  # fmt: skip
