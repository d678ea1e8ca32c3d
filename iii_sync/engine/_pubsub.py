"""Topic pub/sub: the ``publish`` builtin and the ``subscribe`` trigger type.

Follows the engine's local adapter (engine-protocol §6.7, §7.5): each
subscriber gets the published ``data`` as-is, with no metadata and no
condition check. A binding with an empty topic is stored but never fires.
Unlike the local adapter, removing one subscriber leaves the others of the
same topic in place (the adapter's drop-them-all is an inferred quirk that
would only surprise local development).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor
from typing import Any, Dict

from ._input import Input
from ._providers import (
    Binding,
    CallFailed,
    FunctionCaller,
    InProcessProvider,
    TriggerRejected,
)
from ._registry import Registry

logger = logging.getLogger(__name__)


class PubSub(InProcessProvider):
    """Delivers published messages to ``subscribe`` bindings (config: topic)."""

    trigger_type = "subscribe"

    def __init__(self, caller: FunctionCaller, executor: Executor) -> None:
        self._caller = caller
        self._executor = executor
        # Guards _bindings: binding id -> binding.
        self._bindings_lock = threading.Lock()
        self._bindings: Dict[str, Binding] = {}

    def install(self, registry: Registry) -> None:
        """Registers the ``publish`` builtin in ``default``."""
        registry.add_builtin("publish", self.publish, "Publish a message to a topic")

    def register(self, binding: Binding) -> None:
        config = binding.config
        if not isinstance(config, dict) or not isinstance(config.get("topic", ""), str):
            raise TriggerRejected(
                "Failed to parse trigger config: expected an object with a "
                "string `topic`"
            )
        if not config.get("topic"):
            logger.warning(
                "subscribe trigger %s has an empty topic; it will never fire",
                binding.id,
            )
        with self._bindings_lock:
            self._bindings[binding.id] = binding

    def unregister(self, binding: Binding) -> None:
        with self._bindings_lock:
            self._bindings.pop(binding.id, None)

    def publish(self, data: Any) -> Any:
        """``publish {topic, data}``: fans out and returns no result."""
        args = Input("publish", data)
        topic = args.string("topic", required=True)
        message = args.value("data", required=True)
        if not topic:
            raise CallFailed("topic_not_set", "Topic is not set")

        with self._bindings_lock:
            bindings = [
                b for b in self._bindings.values() if b.config.get("topic") == topic
            ]
        for binding in bindings:
            self._executor.submit(self._deliver, binding, message)
        return None

    def _deliver(self, binding: Binding, message: Any) -> None:
        try:
            self._caller.call(binding.function_id, message, namespace=binding.namespace)
        except CallFailed as exc:
            logger.debug(
                "subscriber %s of %s failed: %s",
                binding.function_id,
                binding.config.get("topic"),
                exc,
            )
