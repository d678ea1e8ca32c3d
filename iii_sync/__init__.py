"""iii_sync: a synchronous Python SDK for iii workers.

Start here::

    import iii_sync

    worker = iii_sync.register_worker("ws://127.0.0.1:49134", name="math")

    @worker.function("math::add")
    def add(data):
        return {"sum": data["a"] + data["b"]}

    worker.run_forever()
"""

import logging
from typing import Any, Optional

from ._actions import TriggerAction, TriggerActionEnqueue, TriggerActionVoid
from ._backoff import Backoff
from ._errors import (
    BlockingCallError,
    ConnectionLostError,
    FrameValidationError,
    IIIError,
    InvocationError,
    InvocationTimeoutError,
    RegistrationRejectedError,
    WorkerClosedError,
)
from ._handlers import InvocationContext, current_invocation
from ._protocol import DEFAULT_ENGINE_URL
from ._registrations import FunctionRef, Trigger, TriggerConfig, TriggerTypeRef
from ._state import ConnectionState
from ._version import __version__
from ._worker import Worker

logging.getLogger(__name__).addHandler(logging.NullHandler())

_logger = logging.getLogger(__name__)


def register_worker(url: Optional[str] = None, **options: Any) -> Worker:
    """Creates a worker, starts connecting, and waits for the first connection.

    ``url`` defaults to ``III_URL``, then ``ws://127.0.0.1:49134``. The
    options are described in the README; unknown ones raise ``TypeError``.
    Blocks for at most ``connect_timeout`` seconds (default 10): when the
    engine is not reachable by then it logs a warning and returns a worker
    that keeps trying in the background.

    Raises:
        ValueError: a blank namespace or another bad option value.
        RegistrationRejectedError: the engine refused the worker's name.
    """
    worker = Worker(url, **options)
    worker.start()
    if not worker.wait_until_connected(worker.options.connect_timeout):
        if worker.fatal_error is not None:
            worker.close(timeout=1.0)
            raise worker.fatal_error
        _logger.warning(
            "worker %s not connected to %s after %.1fs; still trying",
            worker.name,
            worker.options.url,
            worker.options.connect_timeout,
        )
    return worker


__all__ = [
    "__version__",
    "BlockingCallError",
    "Backoff",
    "ConnectionLostError",
    "ConnectionState",
    "DEFAULT_ENGINE_URL",
    "FrameValidationError",
    "FunctionRef",
    "IIIError",
    "InvocationContext",
    "InvocationError",
    "InvocationTimeoutError",
    "RegistrationRejectedError",
    "Trigger",
    "TriggerAction",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerConfig",
    "TriggerTypeRef",
    "Worker",
    "WorkerClosedError",
    "current_invocation",
    "register_worker",
]
