"""``run_forever``: serve until a signal, then close within the grace period."""

import logging
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from ._worker import Worker

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve_until_signal(worker: "Worker", close_timeout: float) -> None:
    """Blocks until the worker closes or a signal arrives; see run_forever.

    Raises:
        SystemExit: with ``128 + signal number`` after a signal-driven close.
    """
    if threading.current_thread() is not threading.main_thread():
        worker._closed.wait()
        return

    received: List[int] = []
    previous = _install(worker, received)
    try:
        # Waits in slices so that signal handlers run promptly.
        while not worker._closed.wait(0.1) and not received:
            pass
        if received:
            logger.info("worker %s: signal %d, closing", worker.name, received[0])
            worker.close(close_timeout)
    finally:
        _restore(previous)
    if received:
        raise SystemExit(128 + received[0])


def _install(worker: "Worker", received: List[int]) -> Dict[int, Any]:
    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        # A second signal means "now": the first one's close is taking too long.
        if received:
            os._exit(128 + signum)
        received.append(signum)

    return {signum: signal.signal(signum, on_signal) for signum in _SIGNALS}


def _restore(previous: Dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
