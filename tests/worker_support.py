"""Helpers shared by the worker tests (imported, unlike conftest)."""

import threading
import time

import iii_sync

FAST = {
    "reconnect": iii_sync.Backoff(initial=0.05, maximum=0.2, jitter=0.0),
    "connect_timeout": 5.0,
    "handshake_timeout": 2.0,
}


def iii_threads():
    return [t for t in threading.enumerate() if t.name.startswith("iii-")]


def wait_until(predicate, timeout=5.0, interval=0.01):
    """Polls a cheap condition; for state that has no event to wait on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
