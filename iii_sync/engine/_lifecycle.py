"""A connection's life: accept, announce, reattach, teardown.

Accept follows engine-protocol §3.1, the announce (``engine::workers::register``)
§3.2 to §3.4, reattach §3.5 and teardown §3.7, step by step.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any, Callable, Dict, Optional

from .. import _protocol
from ._registration import NamespaceGate, Registrar
from ._registry import Frame, Outbound, Registry, Worker
from ._router import Router
from ._scheduler import Scheduler
from ._triggers import TriggerRegistry

logger = logging.getLogger(__name__)

# §3.5: how long a reattach waits for the evicted connection's own cleanup.
REATTACH_EVICT_TIMEOUT = 5.0

WorkerEvent = Callable[[str, str], None]


class Lifecycle:
    """Creates, announces and tears down worker connections.

    Args:
        registry, router, triggers, registrar: The engine's tables.
        scheduler: Runs the namespace grace timers.
        grace: Seconds before an unannounced connection is fixed to ``default``.
        on_worker_event: Told ``(event, worker_id)`` for the
            ``engine::workers-available`` trigger type (§6.8).
    """

    def __init__(
        self,
        registry: Registry,
        router: Router,
        triggers: TriggerRegistry,
        registrar: Registrar,
        scheduler: Scheduler,
        grace: float,
        on_worker_event: WorkerEvent,
    ) -> None:
        self._registry = registry
        self._router = router
        self._triggers = triggers
        self._registrar = registrar
        self._scheduler = scheduler
        self._grace = grace
        self._on_worker_event = on_worker_event

    # Accept (§3.1)

    def accept(self, outbound: Outbound, ip_address: Optional[str]) -> Worker:
        """Registers a new connection and greets it with ``workerregistered``."""
        worker = Worker(outbound, ip_address)
        worker.gate = NamespaceGate(lambda frame: self._registrar.apply(worker, frame))
        self._registry.add_worker(worker)
        worker.grace_timer = self._scheduler.call_later(
            self._grace, self._grace_expired, worker
        )
        worker.send(
            {
                "type": _protocol.WORKERREGISTERED,
                "worker_id": worker.id,
                "reattach_token": worker.reattach_token,
            }
        )
        logger.debug("connection %s accepted from %s", worker.id, ip_address)
        self._on_worker_event("worker_connected", worker.id)
        return worker

    def _grace_expired(self, worker: Worker) -> None:
        if worker.tearing_down or not worker.gate.pending:
            return
        if not worker.fix_namespace(_protocol.DEFAULT_NAMESPACE):
            return  # an announce got there first
        logger.warning(
            "worker %s did not announce itself within %.1fs; its "
            "registrations go to namespace 'default'",
            worker.label,
            self._grace,
        )
        if worker.gate.open():
            self._log_connected(worker)

    # Announce (§3.2-§3.4), called by the engine::workers::register builtin

    def announce(
        self,
        worker: Worker,
        declared: Optional[str],
        name: Optional[str],
        details: Dict[str, Any],
    ) -> bool:
        """Fixes the namespace, claims the name, stores metadata, drains.

        Returns False when the name is taken; the worker is then rejected and
        its connection closed (§3.4).
        """
        # §3.2 step 2: a namespace fixed earlier (grace, announce) wins.
        worker.fix_namespace(declared or _protocol.DEFAULT_NAMESPACE)
        namespace = worker.namespace or _protocol.DEFAULT_NAMESPACE
        if declared and declared != namespace:
            logger.info(
                "worker %s declared namespace %s but is fixed to %s",
                worker.label,
                declared,
                namespace,
            )

        if name is not None:
            holder = self._registry.claim_name(worker, namespace, name)
            if holder is not None:
                self._reject_name(worker, namespace, name, holder)
                return False

        # Metadata, then the drain (§3.2 steps 4-5).
        worker.name = name or worker.name
        worker.details = details
        worker.grace_timer.cancel()
        if worker.gate.open():
            self._log_connected(worker)
        self._on_worker_event("worker_metadata_updated", worker.id)
        return True

    def _reject_name(
        self, worker: Worker, namespace: str, name: str, holder: str
    ) -> None:
        logger.error(
            "worker %s refused: name %r in namespace %s is held by %s",
            worker.id,
            name,
            namespace,
            holder,
        )
        worker.grace_timer.cancel()
        worker.gate.abort()
        worker.send(
            {
                "type": _protocol.REGISTRATIONREJECTED,
                "code": _protocol.WORKER_NAMESPACE_CONFLICT,
                "namespace": namespace,
                "worker_name": name,
                "owner_worker_id": holder,
            }
        )
        worker.outbound.close()

    def _log_connected(self, worker: Worker) -> None:
        count = sum(1 for f in self._registry.functions() if f.owner == worker.id)
        logger.info(
            "worker connected: %s in namespace %s (id %s, %d functions)",
            worker.name or "<unnamed>",
            worker.namespace,
            worker.id,
            count,
        )

    # Reattach (§3.5)

    def reattach(self, worker: Worker, frame: Frame) -> None:
        """Evicts the previous connection of a reconnecting worker.

        Runs on the new connection's thread and blocks it until the old
        connection is torn down (at most about five seconds).
        """
        previous_id = _protocol.canonical_uuid(frame["previous_worker_id"])
        previous = self._registry.get(previous_id)
        if previous is None or previous is worker:
            logger.debug(
                "reattach of %s to %s ignored: no such live connection",
                worker.id,
                frame["previous_worker_id"],
            )
            return

        token = frame.get("reattach_token")
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode("utf-8"), previous.reattach_token.encode("utf-8")
        ):
            logger.warning(
                "reattach of %s to %s refused: missing or wrong token",
                worker.id,
                previous.id,
            )
            return

        logger.info(
            "worker %s replaces its previous connection %s", worker.id, previous.id
        )
        previous.outbound.abort()
        if not previous.torn_down.wait(REATTACH_EVICT_TIMEOUT):
            self.teardown(previous)

    # Teardown (§3.7)

    def teardown(self, worker: Worker) -> None:
        """Runs cleanup exactly once; other callers wait for it to finish."""
        if not worker.begin_teardown():
            worker.torn_down.wait(REATTACH_EVICT_TIMEOUT)
            return
        try:
            self._cleanup(worker)
        finally:
            worker.torn_down.set()

    def _cleanup(self, worker: Worker) -> None:
        # 1. Registration frames are swallowed from now on.
        worker.gate.abort()

        # 2. Functions this connection still owns.
        functions = self._registry.remove_functions_of(worker.id)

        # 3. Every in-flight invocation, both kinds, ends with invocation_stopped.
        self._router.halt(self._registry.take_inflight(worker.id))

        # 4. Bindings it made, parked intents, trigger types it provided.
        self._triggers.remove_worker(worker.id)

        # 6-7. Name lease, registry entry, grace timer.
        self._registry.release_names(worker.id)
        self._registry.remove_worker(worker.id)
        worker.grace_timer.cancel()

        logger.info(
            "worker disconnected: %s in namespace %s (id %s, %d functions)",
            worker.name or "<unnamed>",
            worker.namespace or "<pending>",
            worker.id,
            len(functions),
        )
        self._on_worker_event("worker_disconnected", worker.id)
