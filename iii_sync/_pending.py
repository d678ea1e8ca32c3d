"""Calls this worker has sent and is waiting on.

Each call is a :class:`concurrent.futures.Future` keyed by its invocation id.
Entries leave the map exactly once: on their result, on their deadline, or
when their connection drops. Futures are always settled outside the lock, so
a done-callback may call back into the worker.
"""

import concurrent.futures
import heapq
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._concurrency import Driver, Handle
from ._errors import ConnectionLostError, InvocationError, InvocationTimeoutError

logger = logging.getLogger(__name__)


class Pending:
    """One outstanding call: its id, target, future and connection generation."""

    __slots__ = (
        "invocation_id",
        "function_id",
        "future",
        "generation",
        "timeout",
        "deadline",
    )

    def __init__(
        self, invocation_id: str, function_id: str, generation: int, timeout: float
    ) -> None:
        self.invocation_id = invocation_id
        self.function_id = function_id
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.generation = generation
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout


# Raised when settling a cancelled future (3.8+; 3.7 has no such class).
_INVALID_STATE = (
    getattr(concurrent.futures, "InvalidStateError", RuntimeError),
    RuntimeError,
)


def _settle(
    future: "concurrent.futures.Future[Any]",
    result: Any = None,
    error: Optional[BaseException] = None,
) -> None:
    # A caller may have cancelled its future; that only means it stopped caring.
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except _INVALID_STATE:
        logger.debug("result for a cancelled call dropped")
    except (Exception, SystemExit):
        # A done-callback raised (concurrent.futures lets SystemExit out);
        # the thread settling the future must live on.
        logger.exception("a Future callback raised; ignored")


class PendingInvocations:
    """The lock-guarded map of pending calls, with its deadline thread.

    Threading: every method is thread-safe. ``add`` runs on the caller's
    thread, ``resolve`` on the connection thread, ``fail_generation`` on the
    connection thread when a socket dies; timeouts fire on the deadline
    thread. The lock is never held while a future is settled.
    """

    def __init__(self, driver: Driver) -> None:
        self._driver = driver

        # Guards _entries, _deadlines, _live_generation and _stopped.
        self._pending_lock = threading.Condition(threading.Lock())
        self._entries: Dict[str, Pending] = {}
        self._deadlines: List[Tuple[float, str]] = []
        self._live_generation: Optional[int] = None
        self._stopped = False
        self._thread: Optional[Handle] = None
        self.thread_ident: Optional[int] = None

    def __len__(self) -> int:
        with self._pending_lock:
            return len(self._entries)

    def start(self, name: str) -> None:
        """Starts the deadline thread, once."""
        with self._pending_lock:
            if self._thread is None:
                self._thread = self._driver.spawn(name, self._expire_loop)

    def open_generation(self, generation: int) -> None:
        """Accepts new calls for connection ``generation`` from now on."""
        with self._pending_lock:
            self._live_generation = generation

    def add(
        self, function_id: str, generation: int, timeout: float, invocation_id: str
    ) -> Pending:
        """Registers a call about to be sent on connection ``generation``.

        Raises:
            ConnectionLostError: that connection is already gone.
        """
        entry = Pending(invocation_id, function_id, generation, timeout)
        with self._pending_lock:
            if self._stopped or generation != self._live_generation:
                raise ConnectionLostError(
                    "connection lost before %s could be sent" % function_id,
                    function_id=function_id,
                )
            self._entries[entry.invocation_id] = entry
            heapq.heappush(self._deadlines, (entry.deadline, entry.invocation_id))
            self._compact_locked()
            self._pending_lock.notify()
        return entry

    def _compact_locked(self) -> None:
        # Resolved calls leave their deadline in the heap (see
        # _pop_expired_locked); rebuild it when those dominate, so memory
        # stays proportional to the calls really pending.
        if len(self._deadlines) > 4 * len(self._entries) + 1024:
            self._deadlines = [(e.deadline, i) for i, e in self._entries.items()]
            heapq.heapify(self._deadlines)

    def discard(self, invocation_id: str) -> Optional[Pending]:
        """Removes an entry without settling it; returns it if it was there."""
        with self._pending_lock:
            return self._entries.pop(invocation_id, None)

    def resolve(self, invocation_id: str, frame: Dict[str, Any]) -> bool:
        """Settles a call from its ``invocationresult``; False if unknown."""
        with self._pending_lock:
            entry = self._entries.pop(invocation_id, None)
        if entry is None:
            return False

        error = frame.get("error")
        if error is not None:
            _settle(
                entry.future,
                error=InvocationError.from_body(
                    error, entry.function_id, entry.invocation_id
                ),
            )
        else:
            _settle(entry.future, frame.get("result"))
        return True

    def fail_generation(
        self, generation: int, make_error: Callable[[Pending], BaseException]
    ) -> int:
        """Fails every call sent on ``generation`` or earlier; returns how many."""
        with self._pending_lock:
            if (
                self._live_generation is not None
                and self._live_generation <= generation
            ):
                self._live_generation = None
            lost = [e for e in self._entries.values() if e.generation <= generation]
            for entry in lost:
                del self._entries[entry.invocation_id]

        for entry in lost:
            _settle(entry.future, error=make_error(entry))
        return len(lost)

    def stop(
        self, make_error: Callable[[Pending], BaseException], timeout: float
    ) -> None:
        """Fails every call left, refuses new ones, and joins the deadline thread."""
        with self._pending_lock:
            self._stopped = True
            self._live_generation = None
            left = list(self._entries.values())
            self._entries.clear()
            self._pending_lock.notify_all()
            thread = self._thread

        for entry in left:
            _settle(entry.future, error=make_error(entry))
        if thread is not None and self.thread_ident != threading.get_ident():
            thread.join(timeout)

    def _expire_loop(self) -> None:
        self.thread_ident = threading.get_ident()
        while True:
            expired = self._wait_for_expired()
            if expired is None:
                return
            for entry in expired:
                logger.debug(
                    "call %s to %s timed out after %.3gs",
                    entry.invocation_id,
                    entry.function_id,
                    entry.timeout,
                )
                _settle(
                    entry.future,
                    error=InvocationTimeoutError(
                        entry.timeout,
                        function_id=entry.function_id,
                        invocation_id=entry.invocation_id,
                    ),
                )

    def _wait_for_expired(self) -> Optional[List[Pending]]:
        with self._pending_lock:
            while not self._stopped:
                now = time.monotonic()
                expired = self._pop_expired_locked(now)
                if expired:
                    return expired
                wait = self._deadlines[0][0] - now if self._deadlines else None
                self._pending_lock.wait(wait)
            return None

    def _pop_expired_locked(self, now: float) -> List[Pending]:
        # Entries already resolved stay in the heap until their deadline;
        # popping them here is cheaper than removing them at resolve time.
        expired = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, invocation_id = heapq.heappop(self._deadlines)
            entry = self._entries.pop(invocation_id, None)
            if entry is not None:
                expired.append(entry)
        return expired
