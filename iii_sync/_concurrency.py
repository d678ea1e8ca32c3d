"""Where threads come from: real threads, or greenlets under gevent.

Every thread iii_sync starts (the connection thread, the deadline thread and
the handler pool's threads) is started through a :class:`Driver`, so that one
switch decides between OS threads and greenlets. Locks, events and conditions
come from :mod:`threading`; under ``gevent.monkey.patch_all()`` those are
already cooperative, which is why gevent mode insists on the patch.
"""

import logging
import sys
import threading
from typing import Any, Callable, Optional

logger = logging.getLogger(__name__)

THREAD = "thread"
GEVENT = "gevent"


class Handle:
    """A started thread or greenlet that can be joined with a timeout."""

    def __init__(self, inner: Any, name: str) -> None:
        self._inner = inner
        self.name = name

    def join(self, timeout: Optional[float]) -> bool:
        """Waits up to ``timeout`` seconds; returns True if it has finished."""
        self._inner.join(timeout)
        return not self.is_alive()

    def is_alive(self) -> bool:
        if hasattr(self._inner, "is_alive"):
            return bool(self._inner.is_alive())
        return not self._inner.dead

    @property
    def ident(self) -> Any:
        return getattr(self._inner, "ident", id(self._inner))


class Driver:
    """Starts named background threads. Thread-safe."""

    kind = THREAD

    def spawn(self, name: str, target: Callable[[], None]) -> Handle:
        """Starts ``target`` on a new daemon thread called ``name``."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return Handle(thread, name)


class GeventDriver(Driver):
    """Starts greenlets on the current hub instead of OS threads."""

    kind = GEVENT

    def spawn(self, name: str, target: Callable[[], None]) -> Handle:
        import gevent

        greenlet = gevent.spawn(target)
        greenlet.name = name
        return Handle(greenlet, name)


def gevent_patched() -> bool:
    """True when gevent has monkey-patched the socket module."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("socket"))


def make_driver(concurrency: Optional[str]) -> Driver:
    """Returns the driver for ``concurrency``: ``"thread"``, ``"gevent"`` or None.

    None picks gevent when the process is monkey-patched, threads otherwise.

    Raises:
        ValueError: an unknown mode, or gevent mode without
            ``gevent.monkey.patch_all()`` having run, which would let the
            blocking socket freeze the hub.
    """
    if concurrency is None:
        concurrency = GEVENT if gevent_patched() else THREAD

    if concurrency == THREAD:
        if gevent_patched():
            logger.debug("gevent has patched this process; threads are greenlets")
        return Driver()

    if concurrency == GEVENT:
        if not gevent_patched():
            raise ValueError(
                "concurrency='gevent' needs gevent.monkey.patch_all() to run "
                "before iii_sync is used; otherwise the blocking socket would "
                "freeze the gevent hub"
            )
        _warn_if_patched_late()
        return GeventDriver()

    raise ValueError(
        "concurrency must be 'thread' or 'gevent', not %r" % (concurrency,)
    )


def _warn_if_patched_late() -> None:
    # A lock made before patch_all() is a real OS lock: waiting on it from a
    # greenlet blocks the whole hub. threading._allocate_lock being unpatched
    # while socket is patched is the tell-tale of a partial or late patch.
    monkey = sys.modules["gevent.monkey"]
    if not monkey.is_module_patched("threading"):
        logger.warning(
            "gevent patched socket but not threading; call "
            "gevent.monkey.patch_all() first thing in the program"
        )
