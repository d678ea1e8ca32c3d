"""The ``cron`` trigger provider of the embedded engine.

A binding's ``config.expression`` is read by :mod:`._cron_expression` (the
engine's dialect: six or seven fields, seconds first, in UTC); a refused
expression fails the registration with ``Invalid cron expression '<expr>':
<detail>``. Each fire calls the bound function with ``trigger`` (``cron``),
``job_id`` (the binding id), ``scheduled_time`` and ``actual_time``, both
RFC 3339 in UTC as the engine writes them.
"""

import datetime
import heapq
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Dict, List, Optional, Set, Tuple

from ._cron_expression import (
    CronSyntaxError,
    croniter_expression,
    next_fire,
    parse_expression,
)
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
