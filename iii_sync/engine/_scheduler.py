"""One named thread that runs delayed work for the whole engine.

The namespace grace timers (engine-protocol §3.3) are the main client: one
per connection, most of them cancelled before they fire. Keeping them in a
heap served by a single thread avoids a timer thread per connection. Due
callbacks are handed to ``run`` (the engine's call pool), so a slow callback
never delays the next timer.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable, List, Tuple

logger = logging.getLogger(__name__)

# How long stop() waits for the scheduler thread.
_JOIN_TIMEOUT = 2.0


class TimerHandle:
    """A scheduled callback; ``cancel()`` stops it if it has not run yet."""

    __slots__ = ("callback", "args", "cancelled")

    def __init__(self, callback: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        """Thread-safe: a flag read by the scheduler before it runs the callback."""
        self.cancelled = True


class Scheduler:
    """Runs callbacks after a delay, on the engine's call pool.

    Args:
        run: Called on the scheduler thread with a zero-argument callable; it
            must hand the work off (for example ``executor.submit``) and return.
    """

    def __init__(self, run: Callable[[Callable[[], Any]], Any]) -> None:
        self._run = run
        # Guards _heap and _stopping; the condition wakes the thread early.
        self._heap_lock = threading.Condition()
        self._heap: List[Tuple[float, int, TimerHandle]] = []
        self._counter = itertools.count()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._loop, name="iii-engine-scheduler", daemon=True
        )

    def start(self) -> None:
        """Starts the scheduler thread. Call once."""
        self._thread.start()

    def stop(self) -> None:
        """Drops pending timers and joins the thread (bounded wait)."""
        with self._heap_lock:
            self._stopping = True
            self._heap.clear()
            self._heap_lock.notify()
        if self._thread.is_alive():
            self._thread.join(_JOIN_TIMEOUT)

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any
    ) -> TimerHandle:
        """Schedules ``callback(*args)``; thread-safe, never blocks."""
        handle = TimerHandle(callback, args)
        due = time.monotonic() + max(0.0, delay)
        with self._heap_lock:
            heapq.heappush(self._heap, (due, next(self._counter), handle))
            self._heap_lock.notify()
        return handle

    def _loop(self) -> None:
        while True:
            handle = self._next_due()
            if handle is None:
                return
            if not handle.cancelled:
                self._run(functools.partial(handle.callback, *handle.args))

    def _next_due(self) -> Any:
        # Waits (on the condition, never a bare sleep) until a timer is due.
        with self._heap_lock:
            while not self._stopping:
                if not self._heap:
                    self._heap_lock.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay <= 0:
                    return heapq.heappop(self._heap)[2]
                self._heap_lock.wait(delay)
            return None
