"""The in-memory state store, its builtins and the ``state`` trigger type.

``state::set/get/delete/list/list_groups/update`` follow engine-protocol §6.5;
the ``state`` trigger (§7.3) fires on every change with the old and new
values, filtered by the binding's optional ``scope`` and ``key``. Matching
triggers for one change run one after another on the call pool, each after
its optional condition function.
"""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any, Dict, List, Optional

from ._inprocess import BindingTable
from ._input import Input
from ._providers import (
    Binding,
    CallFailed,
    TriggerRejected,
)
from ._registry import Registry
from ._update_ops import apply_ops, check_op

logger = logging.getLogger(__name__)

CREATED, UPDATED, DELETED = "state:created", "state:updated", "state:deleted"


class StateTrigger(BindingTable):
    """Calls functions when state changes (config: optional scope and key)."""

    trigger_type = "state"

    def check(self, binding: Binding) -> None:
        config = binding.config if binding.config is not None else {}
        problem = _config_problem(config)
        if problem:
            raise TriggerRejected(f"Failed to parse trigger config: {problem}")

    def changed(self, payload: Dict[str, Any]) -> None:
        """Queues the matching bindings' calls; never blocks the writer."""
        matching = self.matching(lambda binding: _matches(binding, payload))
        if matching:
            self._executor.submit(self._fire_in_order, matching, payload)

    def _fire_in_order(self, bindings: List[Binding], payload: Dict[str, Any]) -> None:
        for binding in bindings:
            try:
                if self._condition_holds(binding, payload):
                    self._caller.call(
                        binding.function_id,
                        payload,
                        namespace=binding.namespace,
                        metadata=binding.metadata,
                    )
            except CallFailed as exc:
                logger.debug("state trigger %s failed: %s", binding.id, exc)

    def _condition_holds(self, binding: Binding, payload: Dict[str, Any]) -> bool:
        # §7: exactly `false` skips; an error skips too (CallFailed propagates).
        condition = (binding.config or {}).get("condition_function_id")
        if not condition:
            return True
        verdict = self._caller.call(
            condition, payload, namespace=binding.namespace, metadata=binding.metadata
        )
        return verdict is not False


def _config_problem(config: Any) -> Optional[str]:
    if not isinstance(config, dict):
        return "invalid type: expected a map"
    for key in ("scope", "key", "condition_function_id"):
        if config.get(key) is not None and not isinstance(config[key], str):
            return f"invalid type for `{key}`: expected a string"
    return None


def _matches(binding: Binding, payload: Dict[str, Any]) -> bool:
    config = binding.config or {}
    return all(config.get(k) in (None, payload[k]) for k in ("scope", "key"))


class StateStore:
    """Scopes of keys of JSON values, and the ``state::*`` builtins.

    Args:
        trigger: Told about every change.
    """

    def __init__(self, trigger: StateTrigger) -> None:
        self._trigger = trigger
        # Guards _scopes: scope -> key -> value.
        self._scopes_lock = threading.Lock()
        self._scopes: Dict[str, Dict[str, Any]] = {}

    def install(self, registry: Registry) -> None:
        """Registers the ``state::*`` builtins in ``default``."""
        for name in ("set", "get", "delete", "list", "list_groups", "update"):
            registry.add_builtin(
                "state::" + name,
                getattr(self, "_" + name),
                "State: {}".format(name.replace("_", " ")),
            )

    def _write(self, scope: str, key: str, value: Any, deleting: bool = False) -> Any:
        # Returns the previous value (None when missing) and stores the new one.
        with self._scopes_lock:
            items = self._scopes.setdefault(scope, {})
            previous = items.pop(key, None) if deleting else items.get(key)
            if not deleting:
                items[key] = copy.deepcopy(value)
            if not items:
                del self._scopes[scope]
            return previous

    def _changed(self, event: str, scope: str, key: str, old: Any, new: Any) -> None:
        self._trigger.changed(
            {
                "type": "state",
                "event_type": event,
                "scope": scope,
                "key": key,
                "old_value": old,
                "new_value": new,
            }
        )

    def _set(self, data: Any) -> Any:
        args = Input("state::set", data)
        scope = args.string("scope", required=True) or ""
        key = args.string("key", required=True) or ""
        # The value may come as `value` or, as an alias, `data`.
        field = "value" if "value" in args.data else "data"
        value = (
            args.value(field)
            if field in args.data
            else args.fail("missing field `value`")
        )
        previous = self._write(scope, key, value)
        self._changed(
            CREATED if previous is None else UPDATED, scope, key, previous, value
        )
        return {"old_value": previous, "new_value": value}

    def _get(self, data: Any) -> Any:
        args = Input("state::get", data)
        scope = args.string("scope", required=True) or ""
        key = args.string("key", required=True) or ""
        with self._scopes_lock:
            return copy.deepcopy(self._scopes.get(scope, {}).get(key))

    def _delete(self, data: Any) -> Any:
        args = Input("state::delete", data)
        scope = args.string("scope", required=True) or ""
        key = args.string("key", required=True) or ""
        previous = self._write(scope, key, None, deleting=True)
        # §6.5: fired even when the key did not exist.
        self._changed(DELETED, scope, key, previous, None)
        return previous

    def _list(self, data: Any) -> Any:
        args = Input("state::list", data)
        scope = args.string("scope", required=True) or ""
        with self._scopes_lock:
            items = self._scopes.get(scope, {})
            return [copy.deepcopy(items[k]) for k in sorted(items)]

    def _list_groups(self, data: Any) -> Any:
        Input("state::list_groups", data if data is not None else {})
        with self._scopes_lock:
            return {"groups": sorted(self._scopes)}

    def _update(self, data: Any) -> Any:
        args = Input("state::update", data)
        scope = args.string("scope", required=True) or ""
        key = args.string("key", required=True) or ""
        ops = args.value("ops", required=True)
        if not isinstance(ops, list):
            args.fail("invalid type: expected a sequence for `ops`")
        for op in ops:
            problem = check_op(op)
            if problem:
                args.fail(problem)

        # Read-modify-write under the lock so concurrent updates do not race.
        with self._scopes_lock:
            previous = copy.deepcopy(self._scopes.get(scope, {}).get(key))
            value, errors = apply_ops(previous, ops)
            self._scopes.setdefault(scope, {})[key] = copy.deepcopy(value)
        self._changed(
            CREATED if previous is None else UPDATED, scope, key, previous, value
        )
        result = {"old_value": previous, "new_value": value}
        if errors:
            result["errors"] = errors
        return result
