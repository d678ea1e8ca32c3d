"""Connection state and the listeners that watch it."""

import enum
import logging
import threading
from typing import Callable, List

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

    Thread-safe. Listeners run on the thread that changes the state (the
    worker's connection thread, or the one calling ``close()``), one at a
    time and in registration order; a listener that raises is logged and
    skipped. A listener must not block for long: it delays reconnecting.
    """

    def __init__(self, initial: ConnectionState) -> None:
        # Guards _state and _listeners; notifications run outside it.
        self._state_lock = threading.Condition(threading.Lock())
        self._state = initial
        self._listeners: List[StateCallback] = []

        # Serialises notifications so listeners see transitions in order.
        self._notify_lock = threading.Lock()

    @property
    def current(self) -> ConnectionState:
        return self._state

    def set(self, state: ConnectionState) -> bool:
        """Moves to ``state``; returns False if unchanged or already final."""
        with self._notify_lock:
            with self._state_lock:
                if self._state == state or self._state.final:
                    return False
                self._state = state
                listeners = list(self._listeners)
                self._state_lock.notify_all()

            for listener in listeners:
                self._call(listener, state)
        return True

    def subscribe(self, callback: StateCallback) -> Callable[[], None]:
        """Adds a listener, calls it once now, and returns its unsubscriber."""
        with self._notify_lock:
            with self._state_lock:
                self._listeners.append(callback)
                state = self._state
            self._call(callback, state)

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
        except Exception:
            logger.exception("connection state listener %r raised; ignored", listener)
