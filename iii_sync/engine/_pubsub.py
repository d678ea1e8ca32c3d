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
from typing import Any

from ._inprocess import BindingTable
from ._input import Input
from ._providers import (
    Binding,
    CallFailed,
    TriggerRejected,
)
from ._registry import Registry

logger = logging.getLogger(__name__)


class PubSub(BindingTable):
    """Delivers published messages to ``subscribe`` bindings (config: topic)."""

    trigger_type = "subscribe"

    def install(self, registry: Registry) -> None:
        """Registers the ``publish`` builtin in ``default``."""
        registry.add_builtin("publish", self.publish, "Publish a message to a topic")

    def check(self, binding: Binding) -> None:
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

    def publish(self, data: Any) -> Any:
        """``publish {topic, data}``: fans out and returns no result."""
        args = Input("publish", data)
        topic = args.string("topic", required=True)
        message = args.value("data", required=True)
        if not topic:
            raise CallFailed("topic_not_set", "Topic is not set")

        for binding in self.matching(lambda b: b.config.get("topic") == topic):
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
