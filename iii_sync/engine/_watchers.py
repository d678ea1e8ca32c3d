"""The engine's discovery trigger types (engine-protocol §6.8).

``engine::workers-available`` fires on connect, disconnect and each announce;
``engine::functions-available`` polls the function table and fires when the
set of ``(namespace, id)`` pairs changes. Both ignore their config and fire
through the in-process call path with the binding's metadata; the return
value is ignored.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor
from typing import Any, Callable, Dict, FrozenSet, List, Tuple

from ._inprocess import BindingTable
from ._providers import Binding, CallFailed, FunctionCaller

logger = logging.getLogger(__name__)

# How long stop() waits for the poll thread.
_JOIN_TIMEOUT = 2.0


class _FanOut(BindingTable):
    """Any config; each fire is one call per binding on the pool."""

    def fire(self, payload: Dict[str, Any]) -> None:
        """Calls every bound function with ``payload``; never blocks."""
        for binding in self.matching(lambda binding: True):
            self._executor.submit(self._call, binding, payload)

    def _call(self, binding: Binding, payload: Dict[str, Any]) -> None:
        try:
            self._caller.call(
                binding.function_id,
                payload,
                namespace=binding.namespace,
                metadata=binding.metadata,
            )
        except CallFailed as exc:
            logger.debug("%s trigger %s failed: %s", self.trigger_type, binding.id, exc)


class WorkersAvailable(_FanOut):
    """Fires when a worker connects, disconnects or announces itself."""

    trigger_type = "engine::workers-available"

    def notify(self, event: str, worker_id: str) -> None:
        """Lifecycle hook; any thread."""
        self.fire({"event": event, "worker_id": worker_id})


class FunctionsAvailable(_FanOut):
    """Fires when the set of registered functions changes.

    Args:
        caller, executor: As for every fan-out provider.
        snapshot: Returns ``(pairs, summaries)``: the ``(namespace, id)`` set
            and the full function list sent in the event.
        interval: Seconds between polls (the engine uses 5).
    """

    trigger_type = "engine::functions-available"

    def __init__(
        self,
        caller: FunctionCaller,
        executor: Executor,
        snapshot: Callable[[], Tuple[FrozenSet[Tuple[str, str]], List[Any]]],
        interval: float = 5.0,
    ) -> None:
        super().__init__(caller, executor)
        self._snapshot = snapshot
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._poll, name="iii-engine-functions-poll", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(_JOIN_TIMEOUT)

    def _poll(self) -> None:
        seen = self._snapshot()[0]
        while not self._stopping.wait(self._interval):
            pairs, summaries = self._snapshot()
            if pairs == seen:
                continue
            seen = pairs
            self.fire({"event": "functions_changed", "functions": summaries})
