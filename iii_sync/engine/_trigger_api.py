"""Engine builtins about triggers (engine-protocol §6.1, §6.2).

``engine::triggers::list`` lists trigger types; ``engine::register_trigger``
and ``engine::unregister_trigger`` manage durable, ownerless bindings whose
target namespace and home namespace are always ``default``.
"""

from __future__ import annotations

from typing import Any

from .. import _protocol
from ._bindings import TriggerEntry
from ._input import Input
from ._providers import Binding, CallFailed, TriggerRejected
from ._registration import blank_field_message
from ._registry import Registry
from ._triggers import TriggerRegistry

DEFAULT = _protocol.DEFAULT_NAMESPACE

# §5.6: how long a durable binding waits for a worker provider's answer.
REGISTRATION_ACK_TIMEOUT = 10.0


class TriggerFunctions:
    """The trigger builtins.

    Args:
        registry: Where the builtins are installed.
        triggers: The binding tables.
        ack_timeout: Seconds to wait for a worker provider's answer.
    """

    def __init__(
        self,
        registry: Registry,
        triggers: TriggerRegistry,
        ack_timeout: float = REGISTRATION_ACK_TIMEOUT,
    ) -> None:
        self._registry = registry
        self._triggers = triggers
        self._ack_timeout = ack_timeout

    def install(self) -> None:
        """Registers the builtins of this module in ``default``."""
        add = self._registry.add_builtin
        add("engine::triggers::list", self.list_trigger_types, "List trigger types")
        add(
            "engine::register_trigger",
            self.register_trigger,
            "Bind a trigger that outlives its caller",
        )
        add(
            "engine::unregister_trigger",
            self.unregister_trigger,
            "Remove a trigger binding",
        )

    def list_trigger_types(self, data: Any) -> Any:
        """Trigger types of every namespace; ``engine::*`` hidden by default."""
        args = Input("engine::triggers::list", data)
        search = (args.string("search") or "").lower()
        prefix = args.string("prefix")
        worker_filter = args.string("worker")
        include_internal = bool(args.boolean("include_internal"))

        rows = []
        for provider in self._triggers.providers():
            namespace, type_id = provider.key
            owner = self._registry.get(provider.worker_id)
            row = {
                "id": type_id,
                "namespace": namespace,
                "worker_name": (owner.name if owner else None) or "engine",
                "description": provider.description,
            }
            if not include_internal and type_id.startswith(_protocol.ENGINE_PREFIX):
                continue
            if prefix and not type_id.startswith(prefix):
                continue
            if worker_filter is not None and row["worker_name"] != worker_filter:
                continue
            if search and search not in type_id.lower():
                continue
            rows.append(row)
        rows.sort(key=lambda row: (row["id"], row["namespace"]))
        return {"triggers": rows}

    def register_trigger(self, data: Any) -> Any:
        """Files a durable binding; waits up to 10 s for a worker provider."""
        args = Input("engine::register_trigger", data)
        trigger_type = args.string("trigger_type", required=True) or ""
        function_id = args.string("function_id", required=True) or ""
        trigger_namespace = args.string("trigger_namespace")
        if _protocol.is_blank(trigger_namespace):
            raise CallFailed(
                _protocol.INVALID_NAMESPACE, blank_field_message("trigger_namespace")
            )

        binding = Binding(
            _protocol.new_id(),
            trigger_type,
            function_id,
            args.value("config"),
            args.value("metadata"),
            DEFAULT,
        )
        entry = TriggerEntry(binding, None, DEFAULT, trigger_namespace)
        try:
            self._triggers.bind(entry, ack_timeout=self._ack_timeout)
        except TriggerRejected as exc:
            raise CallFailed(_protocol.TRIGGER_REGISTRATION_FAILED, str(exc)) from None
        return {"id": binding.id}

    def unregister_trigger(self, data: Any) -> Any:
        """Removes a binding (live or parked) by id; idempotent."""
        args = Input("engine::unregister_trigger", data)
        binding_id = args.string("id", required=True) or ""
        args.string("trigger_type")
        try:
            removed = self._triggers.unbind(binding_id)
        except Exception as exc:
            raise CallFailed("unregister_failed", str(exc)) from None
        return {"removed": removed}
