"""Registration frames: the namespace hold-back and how each frame applies.

Until a connection's namespace is known, the six namespaced registration
frames are held in arrival order (engine-protocol §3.3). ``engine::workers::register``
or the grace timer opens the gate; the held frames are then applied in the
connection namespace, and frames arriving during the drain join the queue.
After teardown starts the gate swallows everything.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Callable, Deque

from .. import _protocol
from ._bindings import Provider, TriggerEntry, refusal_frame
from ._providers import Binding, TriggerRejected
from ._registry import Frame, FunctionEntry, Registry, Worker
from ._triggers import TriggerRegistry

logger = logging.getLogger(__name__)

HELD_TYPES = frozenset(
    (
        _protocol.REGISTERFUNCTION,
        _protocol.UNREGISTERFUNCTION,
        _protocol.REGISTERSERVICE,
        _protocol.REGISTERTRIGGER,
        _protocol.UNREGISTERTRIGGER,
        _protocol.REGISTERTRIGGERTYPE,
    )
)

_PENDING, _DRAINING, _RESOLVED, _ABORTED = "pending", "draining", "resolved", "aborted"


def blank_field_message(field: str) -> str:
    """The ``INVALID_NAMESPACE`` text for a blank namespace field (§5.4)."""
    return (
        f"`{field}` is empty: it was named and left blank. "
        "Give it a name, or omit it to use `default`."
    )


class NamespaceGate:
    """Holds one connection's registration frames until its namespace is fixed.

    Args:
        apply: Applies one frame; called on the submitting connection thread
            once resolved, or on the opener's thread during the drain.
    """

    def __init__(self, apply: Callable[[Frame], None]) -> None:
        self._apply = apply
        # Guards _state and _held.
        self._held_lock = threading.Lock()
        self._state = _PENDING
        self._held: Deque[Frame] = collections.deque()

    @property
    def pending(self) -> bool:
        """True until the gate has been opened (or aborted)."""
        return self._state == _PENDING

    def submit(self, frame: Frame) -> None:
        """Applies a frame now, holds it, or swallows it after teardown."""
        with self._held_lock:
            if self._state == _ABORTED:
                return
            if self._state in (_PENDING, _DRAINING):
                self._held.append(frame)
                return
        self._apply(frame)

    def open(self) -> bool:
        """Drains the held frames in order; False if the gate was not pending."""
        with self._held_lock:
            if self._state != _PENDING:
                return False
            self._state = _DRAINING
        self._drain()
        return True

    def abort(self) -> None:
        """Teardown: drops held frames and swallows later ones."""
        with self._held_lock:
            self._state = _ABORTED
            self._held.clear()

    def _drain(self) -> None:
        while True:
            with self._held_lock:
                if self._state != _DRAINING:
                    return
                if not self._held:
                    self._state = _RESOLVED
                    return
                frame = self._held.popleft()
            try:
                self._apply(frame)
            except Exception:
                # §3.3: a registration that fails during the drain is skipped.
                logger.exception("held %s frame failed to apply", frame.get("type"))


class Registrar:
    """Applies registration frames in a worker's (resolved) namespace (§5)."""

    def __init__(self, registry: Registry, triggers: TriggerRegistry) -> None:
        self._registry = registry
        self._triggers = triggers

    def apply(self, worker: Worker, frame: Frame) -> None:
        """Applies one held-type frame; dispatch by frame type."""
        handler = getattr(self, "_apply_" + frame["type"])
        handler(worker, frame)

    def _apply_registerfunction(self, worker: Worker, frame: Frame) -> None:
        namespace = worker.namespace or _protocol.DEFAULT_NAMESPACE
        function_id = frame["id"]
        if frame.get("invocation") is not None:
            # Left out of the stand-in (§11); the default security config
            # refuses plain-http URLs anyway, and a refusal is only logged.
            logger.warning(
                "worker %s: HTTP-invoked function %s is not supported "
                "by the local engine; ignored",
                worker.label,
                function_id,
            )
            return

        # §5.1: engine:: is reserved outside default.
        reserved = function_id.startswith(_protocol.ENGINE_PREFIX)
        if reserved and namespace != _protocol.DEFAULT_NAMESPACE:
            self._reject_function(worker, namespace, function_id, "")
            return

        entry = _function_entry(worker, namespace, frame)
        conflict, previous = self._registry.add_function(entry)
        if conflict is not None:
            self._reject_function(worker, namespace, function_id, conflict)
        elif previous is not None:
            logger.warning(
                "worker %s replaced %s in namespace %s",
                worker.label,
                function_id,
                namespace,
            )

    def _reject_function(
        self, worker: Worker, namespace: str, function_id: str, owner: str
    ) -> None:
        logger.warning(
            "worker %s may not register %s in namespace %s (owner %s)",
            worker.label,
            function_id,
            namespace,
            owner or "engine",
        )
        worker.send(
            {
                "type": _protocol.REGISTRATIONREJECTED,
                "code": _protocol.FUNCTION_NAMESPACE_CONFLICT,
                "namespace": namespace,
                "function_id": function_id,
                "owner_worker_id": owner,
            }
        )

    def _apply_unregisterfunction(self, worker: Worker, frame: Frame) -> None:
        namespace = worker.namespace or _protocol.DEFAULT_NAMESPACE
        if not self._registry.remove_function(namespace, frame["id"], worker.id):
            logger.debug(
                "worker %s does not own %s; unregister ignored", worker.id, frame["id"]
            )

    def _apply_registerservice(self, worker: Worker, frame: Frame) -> None:
        namespace = worker.namespace or _protocol.DEFAULT_NAMESPACE
        self._registry.add_service(
            namespace,
            {
                "id": frame["id"],
                "name": frame.get("name") or frame["id"],
                "parent_service_id": frame.get("parent_service_id"),
            },
        )

    def _apply_registertrigger(self, worker: Worker, frame: Frame) -> None:
        # The target namespace defaults to `default`, never the worker's (§5.4).
        binding = Binding(
            frame["id"],
            frame["trigger_type"],
            frame["function_id"],
            frame["config"],
            frame.get("metadata"),
            frame.get("namespace") or _protocol.DEFAULT_NAMESPACE,
        )

        # §5.4 step 1: a blank namespace field is answered, nothing is stored.
        for field in ("namespace", "trigger_namespace"):
            if _protocol.is_blank(frame.get(field)):
                message = blank_field_message(field)
                _refuse(worker, binding, _protocol.INVALID_NAMESPACE, message)
                return

        home = worker.namespace or _protocol.DEFAULT_NAMESPACE
        entry = TriggerEntry(binding, worker.id, home, frame.get("trigger_namespace"))
        try:
            self._triggers.bind(entry)
        except TriggerRejected as exc:
            logger.info("trigger %s of %s refused: %s", binding.id, worker.label, exc)
            _refuse(worker, binding, _protocol.TRIGGER_REGISTRATION_FAILED, str(exc))

    def _apply_unregistertrigger(self, worker: Worker, frame: Frame) -> None:
        try:
            self._triggers.unbind(frame["id"])
        except Exception:
            logger.exception("provider failed to drop trigger %s", frame["id"])

    def _apply_registertriggertype(self, worker: Worker, frame: Frame) -> None:
        namespace = frame.get("namespace")
        if _protocol.is_blank(namespace):
            # §5.6: logged at error level and ignored, no reply.
            logger.error(
                "worker %s declared trigger type %s with a blank namespace; ignored",
                worker.label,
                frame["id"],
            )
            return
        key = (
            namespace or worker.namespace or _protocol.DEFAULT_NAMESPACE,
            frame["id"],
        )
        formats = {
            k: frame.get(k) for k in ("trigger_request_format", "call_request_format")
        }
        self._triggers.add_provider(
            Provider(
                key,
                worker_id=worker.id,
                description=frame["description"],
                formats=formats,
            )
        )
        logger.debug("worker %s provides trigger type %s", worker.id, key)


def _function_entry(worker: Worker, namespace: str, frame: Frame) -> FunctionEntry:
    return FunctionEntry(
        namespace,
        frame["id"],
        owner=worker.id,
        description=frame.get("description"),
        request_format=frame.get("request_format"),
        response_format=frame.get("response_format"),
        metadata=frame.get("metadata"),
    )


def _refuse(worker: Worker, binding: Binding, code: str, message: str) -> None:
    worker.send(refusal_frame(binding, {"code": code, "message": message}))
