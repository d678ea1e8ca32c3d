"""Engine builtins about workers and functions (engine-protocol §3.2, §6.1).

``engine::workers::register`` (the announce), ``engine::functions::list`` and
``::info``, ``engine::workers::list`` and ``::info``. Each is a plain
function of the call's ``data`` that returns the result or raises
``CallFailed``; the router runs them on the call pool.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

from .. import _protocol
from ._input import INVALID_ARGUMENTS, NOT_FOUND, Input, rust_debug
from ._lifecycle import Lifecycle
from ._providers import CallFailed
from ._registry import FunctionEntry, Registry, Worker
from ._triggers import TriggerRegistry

DEFAULT = _protocol.DEFAULT_NAMESPACE

# §3.2: control, bidi override/isolate and line/paragraph separator characters
# are removed from announced names and descriptions, then the text is cut.
_UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_MAX_TEXT = 280
_MAX_BATCH = 32
_WORKER_FIELDS = ("description", "version", "runtime", "os", "isolation")


def sanitize(text: Optional[str]) -> Optional[str]:
    """Cleans an announced name or description; None when nothing is left."""
    if text is None:
        return None
    cleaned = _UNSAFE_TEXT.sub("", text)[:_MAX_TEXT].strip()
    return cleaned or None


def worker_name_of(entry: FunctionEntry, registry: Registry) -> str:
    """The owner's announced name, else the id's first ``::`` segment (§6.1)."""
    owner = registry.get(entry.owner)
    if owner is not None and owner.name:
        return owner.name
    return entry.function_id.split("::", 1)[0]


def function_summary(entry: FunctionEntry, registry: Registry) -> Dict[str, Any]:
    """One ``engine::functions::list`` row."""
    row: Dict[str, Any] = {
        "function_id": entry.function_id,
        "namespace": entry.namespace,
        "worker_name": worker_name_of(entry, registry),
    }
    if entry.description is not None:
        row["description"] = entry.description
    if entry.metadata is not None:
        row["metadata"] = entry.metadata
    return row


def is_internal(function_id: str, metadata: Any) -> bool:
    """Hidden from listings unless ``include_internal`` (§6.1)."""
    if isinstance(metadata, dict) and metadata.get("internal") is True:
        return True
    return function_id.startswith(
        _protocol.ENGINE_PREFIX
    ) and not function_id.startswith("engine::queue::")


class DiscoveryFunctions:
    """The worker and function discovery builtins."""

    def __init__(
        self, registry: Registry, triggers: TriggerRegistry, lifecycle: Lifecycle
    ) -> None:
        self._registry = registry
        self._triggers = triggers
        self._lifecycle = lifecycle

    def install(self) -> None:
        """Registers every builtin of this module in ``default``."""
        add = self._registry.add_builtin
        add(
            "engine::workers::register",
            self.register_worker,
            "Announce a worker's name, namespace and metadata",
        )
        add("engine::functions::list", self.list_functions, "List functions")
        add("engine::functions::info", self.function_info, "Describe functions")
        add("engine::workers::list", self.list_workers, "List connected workers")
        add("engine::workers::info", self.worker_info, "Describe one worker")

    # engine::workers::register (§3.2)

    def register_worker(self, data: Any) -> Any:
        """Announces the calling worker."""
        args = Input("engine::workers::register", data)
        caller_id = args.string("_caller_worker_id", required=True)
        details = self._announced_details(args)
        namespace = args.string("namespace")
        worker = self._registry.get(caller_id)
        name = sanitize(args.string("name"))

        if _protocol.is_blank(namespace):
            raise CallFailed(
                _protocol.INVALID_NAMESPACE,
                (
                    "namespace is empty: worker '{}' declared {}. Give it a name, or "
                    "omit the field to register in 'default'."
                ).format(
                    name or (worker.name if worker else None) or "<unnamed>",
                    rust_debug(namespace or ""),
                ),
            )
        if worker is None:
            return {"success": False}
        return {"success": self._lifecycle.announce(worker, namespace, name, details)}

    @staticmethod
    def _announced_details(args: Input) -> Dict[str, Any]:
        details: Dict[str, Any] = {key: args.string(key) for key in _WORKER_FIELDS}
        details["description"] = sanitize(details["description"])
        details["runtime"] = details["runtime"] or "unknown"
        details["pid"] = args.integer("pid", unsigned32=True)
        telemetry = args.mapping("telemetry")
        if telemetry is not None:
            sub = Input("engine::workers::register", telemetry)
            details["telemetry"] = {
                key: sub.string(key)
                for key in ("language", "project_name", "framework")
                if sub.has(key)
            }
        return details

    # engine::functions::list / ::info

    def list_functions(self, data: Any) -> Any:
        """Every namespace's functions, filtered and sorted."""
        args = Input("engine::functions::list", data)
        search = (args.string("search") or "").lower()
        prefix = args.string("prefix")
        workers = set(args.strings("workers") or ())
        if args.has("worker"):
            workers.add(args.string("worker") or "")
        include_internal = bool(args.boolean("include_internal"))

        rows = []
        for entry in self._registry.functions():
            if not include_internal and is_internal(entry.function_id, entry.metadata):
                continue
            if prefix and not entry.function_id.startswith(prefix):
                continue
            row = function_summary(entry, self._registry)
            if workers and row["worker_name"] not in workers:
                continue
            rank = _search_rank(search, entry.function_id, entry.description)
            if rank is not None:
                rows.append((rank, entry.function_id, entry.namespace, row))
        rows.sort(key=lambda item: item[:3])
        return {"functions": [item[3] for item in rows]}

    def function_info(self, data: Any) -> Any:
        """One function's detail, or a batch of them."""
        args = Input("engine::functions::info", data)
        single = args.string("function_id")
        batch = args.strings("function_ids")
        namespace = args.string("namespace")
        if single is not None and batch is not None:
            raise CallFailed(
                INVALID_ARGUMENTS,
                "pass either `function_id` or `function_ids`, not both",
            )
        if single is not None:
            return self._function_detail(self._find_function(single, namespace))
        if batch is None:
            raise CallFailed(
                INVALID_ARGUMENTS,
                "missing field `function_id` (or `function_ids` for a batch)",
            )
        if not batch:
            raise CallFailed(
                INVALID_ARGUMENTS,
                "`function_ids` must be a non-empty array of function ids",
            )
        if len(batch) > _MAX_BATCH:
            raise CallFailed(INVALID_ARGUMENTS, "too many function_ids (max 32)")
        return {"functions": [self._batch_item(fid, namespace) for fid in batch]}

    def _batch_item(self, function_id: str, namespace: Optional[str]) -> Any:
        try:
            return self._function_detail(self._find_function(function_id, namespace))
        except CallFailed:
            return {"function_id": function_id, "error": "not_found"}

    def _find_function(
        self, function_id: str, namespace: Optional[str]
    ) -> FunctionEntry:
        # A bare id resolves in default first, then in its only namespace.
        candidates = (
            [namespace] if namespace else self._registry.namespaces_of(function_id)
        )
        if not namespace and DEFAULT in candidates:
            candidates = [DEFAULT]
        if len(candidates) > 1:
            raise CallFailed(
                NOT_FOUND,
                (
                    "Function '{}' is ambiguous: it is registered in namespace(s): {}. "
                    "Pass `namespace` to select one."
                ).format(function_id, ", ".join(candidates)),
            )
        entry = (
            self._registry.lookup(candidates[0], function_id) if candidates else None
        )
        if entry is None:
            raise CallFailed(NOT_FOUND, f"Function '{function_id}' is not registered.")
        return entry

    def _function_detail(self, entry: FunctionEntry) -> Dict[str, Any]:
        detail = function_summary(entry, self._registry)
        if entry.request_format is not None:
            detail["request_schema"] = entry.request_format
        if entry.response_format is not None:
            detail["response_schema"] = entry.response_format
        detail["registered_triggers"] = [
            {
                "id": t.binding.id,
                "trigger_type": t.binding.trigger_type,
                "config": t.binding.config,
            }
            for t in self._triggers.entries()
            if t.binding.function_id == entry.function_id
            and t.binding.namespace == entry.namespace
        ]
        return detail

    # engine::workers::list / ::info

    def list_workers(self, data: Any) -> Any:
        """Announced workers (those that reported a pid), sorted by name then id."""
        args = Input("engine::workers::list", data)
        search = (args.string("search") or "").lower()
        runtime = args.string("runtime")
        status = args.string("status")
        rows = []
        for worker in self._registry.workers():
            if worker.details.get("pid") is None:
                continue
            row = self._worker_row(worker)
            if runtime is not None and row["runtime"] != runtime:
                continue
            if status is not None and row["status"] != status:
                continue
            if search and search not in "{} {}".format(
                (row["name"] or "").lower(), worker.id
            ):
                continue
            rows.append(row)
        rows.sort(key=lambda row: (row["name"] or row["id"], row["id"]))
        return {"workers": rows}

    def _worker_row(self, worker: Worker) -> Dict[str, Any]:
        row: Dict[str, Any] = {"name": worker.name, "id": worker.id}
        for key in _WORKER_FIELDS:
            row[key] = worker.details.get(key)
        row.update(
            {
                "namespace": worker.namespace,
                "status": "connected",
                "function_count": len(self._functions_of(worker)),
                "connected_at_ms": worker.connected_at_ms,
                "active_invocations": self._registry.inflight_count(worker.id),
                "ip_address": worker.ip_address,
            }
        )
        return row

    def _functions_of(self, worker: Worker) -> List[str]:
        return sorted(
            f.function_id for f in self._registry.functions() if f.owner == worker.id
        )

    def worker_info(self, data: Any) -> Any:
        """One connected worker by name, with its functions and triggers."""
        args = Input("engine::workers::info", data)
        name = args.string("name", required=True) or ""
        worker = self._find_worker(name, args.string("namespace"))
        info = self._worker_row(worker)
        info["pid"] = worker.details.get("pid")
        info["internal"] = False
        if worker.details.get("telemetry") is not None:
            info["telemetry"] = worker.details["telemetry"]
        return {
            "worker": info,
            "functions": self._functions_of(worker),
            "trigger_types": [
                {"id": p.key[1], "namespace": p.key[0], "description": p.description}
                for p in self._triggers.providers()
                if p.worker_id == worker.id
            ],
            "registered_triggers": [
                {
                    "id": t.binding.id,
                    "trigger_type": t.binding.trigger_type,
                    "function_id": t.binding.function_id,
                    "config": t.binding.config,
                }
                for t in self._triggers.entries()
                if t.owner == worker.id
            ],
        }

    def _find_worker(self, name: str, namespace: Optional[str]) -> Worker:
        named = [w for w in self._registry.workers() if w.name == name]
        found = [w for w in named if w.namespace == namespace] if namespace else named
        if not namespace and len(found) > 1:
            found = [w for w in found if w.namespace == DEFAULT] or found
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CallFailed(
                NOT_FOUND,
                (
                    "Worker '{}' is ambiguous: it is connected in namespace(s): {}. "
                    "Pass `namespace` to select one."
                ).format(name, ", ".join(sorted(str(w.namespace) for w in found))),
            )
        elsewhere = sorted(str(w.namespace) for w in named)
        if elsewhere:
            raise CallFailed(
                NOT_FOUND,
                (
                    "Worker '{}' is not connected in namespace '{}'. It is connected "
                    "in namespace(s): {}."
                ).format(name, namespace, ", ".join(elsewhere)),
            )
        raise CallFailed(NOT_FOUND, f"Worker '{name}' is not connected.")


def _search_rank(search: str, function_id: str, description: Optional[str]) -> Any:
    # Id-anchored hits first, then hits inside the id, then the description.
    if not search:
        return 0
    lowered = function_id.lower()
    if lowered.startswith(search):
        return 0
    if search in lowered:
        return 1
    if description and search in description.lower():
        return 2
    return None
