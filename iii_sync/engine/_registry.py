"""Who is connected and who owns what: workers, name leases, functions.

One lock guards every table here; it is held only for dictionary work, never
while a frame is sent or a callback runs. Workers are keyed by their UUID,
functions by ``(namespace, id)`` (engine-protocol §5.1), name leases by
``(namespace, name)`` (§3.4).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .. import _protocol

logger = logging.getLogger(__name__)

Frame = Dict[str, Any]
Builtin = Callable[[Any], Any]


class UnsendableFrameError(ValueError):
    """The wire codec refuses to encode a frame; nothing was sent.

    The connection is untouched: a frame that cannot be encoded fails the one
    invocation it belongs to, never the worker it was meant for.
    """


class Outbound:
    """How the core talks to one connection; the server supplies the real one.

    Every method may be called from any thread.
    """

    def send(self, frame: Frame) -> bool:
        """Queues one frame; False when the connection is already closed.

        Raises:
            UnsendableFrameError: the frame cannot be encoded (see
                ``_protocol.encode_bytes``); the connection stays as it was.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Sends a Close frame without a status code (§3.4) and ends the session."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drops the socket without a Close frame (eviction, shutdown)."""
        raise NotImplementedError


class Worker:
    """One connection on ``/`` and what the engine knows about it.

    The identity fields are fixed at accept. ``name``, ``namespace`` and
    ``details`` are written by ``engine::workers::register`` (or the grace
    timer) and read by discovery builtins; single attribute writes, so no lock.

    Attributes:
        id: The connection's UUID, sent in ``workerregistered``.
        reattach_token: The secret a reconnecting worker must echo (§3.5).
            Never logged.
        name: The sanitised worker name, once announced.
        namespace: The connection namespace, once resolved (§3.3).
        details: Announced metadata (runtime, version, os, pid, ...).
        gate: The registration hold-back of this connection (set by the
            lifecycle).
        torn_down: Set when cleanup (§3.7) has finished.
    """

    def __init__(self, outbound: Outbound, ip_address: Optional[str]) -> None:
        self.id = _protocol.new_id()
        self.reattach_token = _protocol.new_id()
        self.outbound = outbound
        self.ip_address = ip_address
        self.connected_at_ms = int(time.time() * 1000)
        self.name: Optional[str] = None
        self.namespace: Optional[str] = None
        self.details: Dict[str, Any] = {}
        self.gate: Any = None
        self.grace_timer: Any = None
        self.torn_down = threading.Event()
        # Guards tearing_down; set once by whoever starts the cleanup.
        self._teardown_lock = threading.Lock()
        self.tearing_down = False
        # Guards the first write of namespace (announce and grace timer race).
        self._namespace_lock = threading.Lock()

    @property
    def label(self) -> str:
        """``name (uuid)`` once named, else the UUID; for log lines."""
        return f"{self.name} ({self.id})" if self.name else self.id

    def fix_namespace(self, candidate: str) -> bool:
        """Sets the connection namespace unless already set; True if it did."""
        with self._namespace_lock:
            if self.namespace is not None:
                return False
            self.namespace = candidate
            return True

    def begin_teardown(self) -> bool:
        """True for the first caller only; cleanup runs exactly once (§3.7)."""
        with self._teardown_lock:
            if self.tearing_down:
                return False
            self.tearing_down = True
            return True

    def send(self, frame: Frame) -> bool:
        """Sends a frame to this worker; False if it is gone or unsendable.

        Callable from any thread; never raises. An unsendable frame is logged.
        """
        try:
            return self.outbound.send(frame)
        except UnsendableFrameError as exc:
            logger.warning(
                "could not encode %s frame for worker %s: %s",
                frame.get("type"),
                self.label,
                exc,
            )
            return False

    def deliver(self, frame: Frame) -> bool:
        """Like :meth:`send`, for a sender that answers an unsendable frame.

        Raises:
            UnsendableFrameError: the frame cannot be encoded; nothing was sent.
        """
        return self.outbound.send(frame)


class FunctionEntry:
    """A registered function: a builtin (``owner`` None) or a worker's."""

    __slots__ = (
        "namespace",
        "function_id",
        "owner",
        "description",
        "request_format",
        "response_format",
        "metadata",
        "builtin",
    )

    def __init__(
        self,
        namespace: str,
        function_id: str,
        owner: Optional[str] = None,
        description: Optional[str] = None,
        request_format: Any = None,
        response_format: Any = None,
        metadata: Any = None,
        builtin: Optional[Builtin] = None,
    ) -> None:
        self.namespace = namespace
        self.function_id = function_id
        self.owner = owner
        self.description = description
        self.request_format = request_format
        self.response_format = response_format
        self.metadata = metadata
        self.builtin = builtin


class Registry:
    """Thread-safe tables of workers, name leases, functions and in-flight ids."""

    def __init__(self) -> None:
        # Guards every dict and set below, including each worker's in-flight set.
        self._tables_lock = threading.Lock()
        self._workers: Dict[str, Worker] = {}
        self._leases: Dict[Tuple[str, str], str] = {}
        self._functions: Dict[Tuple[str, str], FunctionEntry] = {}
        self._services: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self._inflight: Dict[str, Set[str]] = {}

    # Workers

    def add_worker(self, worker: Worker) -> None:
        """Files a freshly accepted connection."""
        with self._tables_lock:
            self._workers[worker.id] = worker
            self._inflight[worker.id] = set()

    def remove_worker(self, worker_id: str) -> None:
        """Forgets a connection (last step of cleanup, §3.7)."""
        with self._tables_lock:
            self._workers.pop(worker_id, None)
            self._inflight.pop(worker_id, None)

    def get(self, worker_id: Optional[str]) -> Optional[Worker]:
        """The connected worker with this UUID, or None."""
        with self._tables_lock:
            return self._workers.get(worker_id) if worker_id else None

    def workers(self) -> List[Worker]:
        """A snapshot list of connected workers."""
        with self._tables_lock:
            return list(self._workers.values())

    def _is_live(self, worker_id: Optional[str]) -> bool:
        worker = self._workers.get(worker_id) if worker_id else None
        return worker is not None and not worker.tearing_down

    # Name leases (§3.4)

    def claim_name(self, worker: Worker, namespace: str, name: str) -> Optional[str]:
        """Takes the lease on ``(namespace, name)``; returns the holder on conflict.

        A lease held by a gone or tearing-down connection is taken over; a
        re-claim by the same connection succeeds.
        """
        key = (namespace, name)
        with self._tables_lock:
            holder = self._leases.get(key)
            if holder and holder != worker.id and self._is_live(holder):
                return holder
            self._leases[key] = worker.id
            return None

    def release_names(self, worker_id: str) -> None:
        """Releases every lease this connection holds (compare-and-swap)."""
        with self._tables_lock:
            for key in [k for k, v in self._leases.items() if v == worker_id]:
                del self._leases[key]

    # Functions (§5.1, §5.2)

    def add_builtin(self, function_id: str, handler: Builtin, description: str) -> None:
        """Registers an engine builtin in ``default`` (§6)."""
        entry = FunctionEntry(
            _protocol.DEFAULT_NAMESPACE,
            function_id,
            description=description,
            builtin=handler,
        )
        with self._tables_lock:
            self._functions[(entry.namespace, function_id)] = entry

    def add_function(
        self, entry: FunctionEntry
    ) -> Tuple[Optional[str], Optional[FunctionEntry]]:
        """Claims ``(namespace, id)`` for ``entry.owner``.

        Returns ``(conflicting owner id, None)`` when another live connection
        owns it, else ``(None, replaced entry or None)``. A builtin is replaced
        silently by a worker's function (§5.1 quirk).
        """
        key = (entry.namespace, entry.function_id)
        with self._tables_lock:
            current = self._functions.get(key)
            if current is not None and current.owner not in (None, entry.owner):
                if self._is_live(current.owner):
                    return current.owner, None
            self._functions[key] = entry
            return None, current

    def remove_function(self, namespace: str, function_id: str, owner: str) -> bool:
        """Removes a function only if ``owner`` still owns it."""
        key = (namespace, function_id)
        with self._tables_lock:
            current = self._functions.get(key)
            if current is None or current.owner != owner:
                return False
            del self._functions[key]
            return True

    def remove_functions_of(self, owner: str) -> List[FunctionEntry]:
        """Removes and returns every function this connection owns (§3.7 step 2)."""
        with self._tables_lock:
            keys = [k for k, v in self._functions.items() if v.owner == owner]
            return [self._functions.pop(k) for k in keys]

    def lookup(self, namespace: str, function_id: str) -> Optional[FunctionEntry]:
        """The function registered under exactly this namespace, or None."""
        with self._tables_lock:
            return self._functions.get((namespace, function_id))

    def namespaces_of(self, function_id: str) -> List[str]:
        """Sorted namespaces in which ``function_id`` is registered."""
        with self._tables_lock:
            return sorted(ns for ns, fid in self._functions if fid == function_id)

    def functions(self) -> List[FunctionEntry]:
        """A snapshot of every registered function, builtins included."""
        with self._tables_lock:
            return list(self._functions.values())

    def add_service(self, namespace: str, service: Dict[str, Any]) -> None:
        """Stores a ``registerservice`` record (§5.3); nothing reads it back yet."""
        with self._tables_lock:
            self._services[(namespace, service["id"])] = service

    # In-flight invocation ids (§3.7 step 3)

    def track(self, worker_id: str, invocation_id: str) -> None:
        """Adds an id to a connection's in-flight set (no-op if it is gone)."""
        with self._tables_lock:
            ids = self._inflight.get(worker_id)
            if ids is not None:
                ids.add(invocation_id)

    def untrack(self, worker_id: str, invocation_id: str) -> None:
        """Removes an id from a connection's in-flight set."""
        with self._tables_lock:
            self._inflight.get(worker_id, set()).discard(invocation_id)

    def take_inflight(self, worker_id: str) -> Set[str]:
        """Empties and returns a connection's in-flight set."""
        with self._tables_lock:
            ids = self._inflight.get(worker_id, set())
            self._inflight[worker_id] = set()
            return ids

    def inflight_count(self, worker_id: str) -> int:
        """How many invocations this connection has in flight, both kinds."""
        with self._tables_lock:
            return len(self._inflight.get(worker_id, ()))
