"""Connection state and the listeners that watch it."""

import collections
import enum
import logging
import threading
from typing import Callable, Deque, List, Tuple

logger = logging.getLogger(__name__)


class ConnectionState(str, enum.Enum):
    """Where a worker's connection stands.

    ``CONNECTING`` before the first connection, ``CONNECTED`` while a socket
    is open and registered, ``RECONNECTING`` between connections,
    ``FAILED`` after a fatal rejection or exhausted retries, ``CLOSED`` after
    ``close()``. ``FAILED`` and ``CLOSED`` are final.
    """

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    CLOSED = "closed"

    @property
    def final(self) -> bool:
        """True for states the worker never leaves."""
        return self in (ConnectionState.FAILED, ConnectionState.CLOSED)


StateCallback = Callable[[ConnectionState], None]


class StateTracker:
    """Holds the current state, wakes waiters and notifies listeners.

    Thread-safe. Listeners see every transition once, in order, one at a
    time, on the thread that made the first of the transitions still being
    delivered (usually the connection thread). A listener that raises is
    logged and skipped. A listener may call back into the worker, even
    ``close()``: a transition it causes is delivered after the current one.
    A listener must not block for long: it delays reconnecting.
    """

    def __init__(self, initial: ConnectionState) -> None:
        # Guards _state, _listeners, _undelivered and _delivering;
        # listeners always run outside it.
        self._state_lock = threading.Condition(threading.Lock())
        self._state = initial
        self._listeners: List[StateCallback] = []
        # Each transition with the listeners registered when it happened.
        self._undelivered: Deque[Tuple[ConnectionState, List[StateCallback]]] = (
            collections.deque()
        )
        self._delivering = False

    @property
    def current(self) -> ConnectionState:
        return self._state

    def set(self, state: ConnectionState) -> bool:
        """Moves to ``state``; returns False if unchanged or already final."""
        with self._state_lock:
            if self._state == state or self._state.final:
                return False
            self._state = state
            self._undelivered.append((state, list(self._listeners)))
            self._state_lock.notify_all()
            if self._delivering:
                return True
            self._delivering = True
        self._deliver()
        return True

    def _deliver(self) -> None:
        # One thread at a time drains the queue, so listeners see
        # transitions in order even when several threads change the state.
        while True:
            with self._state_lock:
                if not self._undelivered:
                    self._delivering = False
                    return
                state, listeners = self._undelivered.popleft()
            for listener in listeners:
                self._call(listener, state)

    def subscribe(self, callback: StateCallback) -> Callable[[], None]:
        """Adds a listener, has it called once with the current state, and
        returns its unsubscriber.

        The first call runs now on this thread, unless another thread is
        delivering a transition: then that thread makes it, right after,
        so that the listener never runs twice at once or sees states out of
        order.
        """
        with self._state_lock:
            self._listeners.append(callback)
            self._undelivered.append((self._state, [callback]))
            deliver_here = not self._delivering
            self._delivering = True
        if deliver_here:
            self._deliver()

        def unsubscribe() -> None:
            with self._state_lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def wait_for(
        self, predicate: Callable[[ConnectionState], bool], timeout: float
    ) -> bool:
        """Blocks until ``predicate(state)`` holds or ``timeout`` seconds pass."""
        with self._state_lock:
            return self._state_lock.wait_for(lambda: predicate(self._state), timeout)

    @staticmethod
    def _call(listener: StateCallback, state: ConnectionState) -> None:
        try:
            listener(state)
        except (Exception, SystemExit):
            logger.exception("connection state listener %r raised; ignored", listener)
