"""The bounded pool that runs function handlers.

At most ``max_workers`` handlers run at once and at most ``max_queued`` wait
for a thread. A handler that calls another function and waits for it (a
nested ``trigger``) gives its slot back for the duration of the wait, so that
the nested invocation can run even when every slot is taken: with
``max_workers=1`` a chain of nested calls of any depth completes, at the cost
of one extra thread per waiting level.
"""

import collections
import contextlib
import logging
import threading
import time
from typing import Callable, Deque, Iterator, List, Optional

from ._concurrency import Driver, Handle

logger = logging.getLogger(__name__)

Job = Callable[[], None]


class HandlerPool:
    """Runs jobs on a bounded set of named threads (or greenlets).

    Threading: ``submit`` is called from the connection thread, ``blocking``
    from handler threads, ``shutdown`` from the thread closing the worker; all
    methods are thread-safe. Jobs must not raise (a raising job is logged).
    """

    def __init__(
        self,
        driver: Driver,
        max_workers: int,
        max_queued: int,
        name: str = "iii-handler",
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._driver = driver
        self._max_workers = max_workers
        self._max_queued = max_queued
        self._name = name

        # Guards every field below it; never held while a job runs.
        self._work_lock = threading.Condition(threading.Lock())
        self._queue: Deque[Job] = collections.deque()
        self._threads: List[Handle] = []
        self._idle = 0
        self._running = 0
        self._blocked = 0
        self._serial = 0
        self._accepting = True

        # Marks this pool's own threads. Made here, not at import, so that
        # under gevent it is a greenlet-local even if patching came late.
        self._local = threading.local()

    @property
    def busy(self) -> int:
        """Jobs running or queued right now."""
        with self._work_lock:
            return self._running + len(self._queue)

    def submit(self, job: Job) -> bool:
        """Queues a job; returns False when the pool is full or shut down."""
        with self._work_lock:
            if not self._accepting or len(self._queue) >= self._max_queued:
                return False
            self._queue.append(job)
            self._work_lock.notify()
            self._grow_locked()
        return True

    def in_pool_thread(self) -> bool:
        """True when called from one of this pool's threads."""
        return bool(getattr(self._local, "mine", False))

    @contextlib.contextmanager
    def blocking(self) -> Iterator[None]:
        """Marks the calling handler as waiting, freeing its slot meanwhile.

        A no-op when called from a thread that is not one of this pool's.
        """
        if not self.in_pool_thread():
            yield
            return

        with self._work_lock:
            self._blocked += 1
            self._grow_locked()
        try:
            yield
        finally:
            with self._work_lock:
                self._blocked -= 1

    def shutdown(self, timeout: float) -> bool:
        """Stops taking jobs and waits for queued and running ones to finish.

        Blocks for at most ``timeout`` seconds. Returns True when every job
        finished; otherwise the remaining threads are abandoned (they are
        daemons) and a warning names how many. Called from one of the pool's
        own jobs, it waits for the others and leaves the caller's running.
        """
        deadline = time.monotonic() + timeout
        own = 1 if self.in_pool_thread() else 0
        with self._work_lock:
            self._accepting = False
            self._work_lock.notify_all()
            drained = self._work_lock.wait_for(
                lambda: not self._queue and self._running <= own,
                max(0.0, deadline - time.monotonic()),
            )
            threads = list(self._threads)

        me = threading.get_ident()
        for handle in threads:
            if handle.ident != me:
                handle.join(max(0.0, deadline - time.monotonic()))
        if not drained:
            logger.warning(
                "%d handler(s) still running after %.1fs; abandoned", self.busy, timeout
            )
        return drained

    def _grow_locked(self) -> None:
        # Start threads while more jobs wait than threads are idle, as long
        # as the threads not blocked in a nested call stay within the limit.
        while (
            len(self._queue) > self._idle
            and len(self._threads) - self._blocked < self._max_workers
        ):
            self._serial += 1
            name = "%s-%d" % (self._name, self._serial)
            self._idle += 1
            self._threads.append(self._spawn(name))

    def _spawn(self, name: str) -> Handle:
        return self._driver.spawn(name, lambda: self._work(name))

    def _work(self, name: str) -> None:
        self._local.mine = True
        while True:
            job = self._next_job(name)
            if job is None:
                return
            try:
                job()
            except BaseException:
                logger.exception("handler job raised; the pool goes on")
            finally:
                self._finish_job()

    def _next_job(self, name: str) -> Optional[Job]:
        with self._work_lock:
            while not self._queue:
                if not self._accepting or self._surplus_locked():
                    self._idle -= 1
                    self._threads = [h for h in self._threads if h.name != name]
                    self._work_lock.notify_all()
                    return None
                self._work_lock.wait(1.0)
            self._idle -= 1
            self._running += 1
            return self._queue.popleft()

    def _finish_job(self) -> None:
        with self._work_lock:
            self._running -= 1
            self._idle += 1
            self._work_lock.notify_all()
            self._grow_locked()

    def _surplus_locked(self) -> bool:
        # Threads started to cover nested waits retire once idle.
        return len(self._threads) - self._blocked > self._max_workers
