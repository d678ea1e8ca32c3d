"""Read-only snapshots of the engine's tables, for tests and tools.

Each view is a frozen copy taken under the tables' locks; holding one never
blocks the engine and it does not change when the engine does.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from ._registry import Registry
from ._triggers import TriggerRegistry


class WorkerView(NamedTuple):
    """One connected worker as the engine sees it."""

    id: str
    name: Optional[str]
    namespace: Optional[str]
    details: Dict[str, Any]
    function_ids: List[str]
    trigger_types: List[str]
    triggers: List[str]
    active_invocations: int


class TriggerView(NamedTuple):
    """One trigger binding; ``provider`` is None while it is parked."""

    id: str
    trigger_type: str
    function_id: str
    namespace: str
    owner: Optional[str]
    provider: Optional[Tuple[str, str]]


def worker_views(registry: Registry, triggers: TriggerRegistry) -> List[WorkerView]:
    """Every connected worker, in connection order."""
    functions = registry.functions()
    providers = triggers.providers()
    entries = triggers.entries()
    views = []
    for worker in registry.workers():
        views.append(
            WorkerView(
                worker.id,
                worker.name,
                worker.namespace,
                dict(worker.details),
                sorted(f.function_id for f in functions if f.owner == worker.id),
                sorted(p.key[1] for p in providers if p.worker_id == worker.id),
                sorted(e.binding.id for e in entries if e.owner == worker.id),
                registry.inflight_count(worker.id),
            )
        )
    return views


def function_keys(registry: Registry) -> List[Tuple[str, str]]:
    """Sorted ``(namespace, function id)`` pairs, builtins included."""
    return sorted((f.namespace, f.function_id) for f in registry.functions())


def trigger_views(triggers: TriggerRegistry) -> List[TriggerView]:
    """Every binding, live and parked."""
    return [
        TriggerView(
            e.binding.id,
            e.binding.trigger_type,
            e.binding.function_id,
            e.binding.namespace,
            e.owner,
            e.key,
        )
        for e in triggers.entries()
    ]
