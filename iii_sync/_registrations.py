"""What this worker has registered, kept for replay on every connection.

Each registration remembers the connection generation it was last sent on,
and claims a generation under the lock before it is sent, so that a
registration made while a replay runs goes out exactly once per connection.
"""

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from . import _protocol
from ._handlers import HandlerAdapter

if TYPE_CHECKING:  # pragma: no cover
    from ._worker import Worker

logger = logging.getLogger(__name__)


class _Registration:
    """Base: a frame to send on every connection, and its undo frame."""

    kind = ""

    def __init__(self, worker: "Worker", key: str) -> None:
        self._worker = worker
        self.key = key
        self.sent_generation: Optional[int] = None
        self.error: Optional[Exception] = None
        self._answered = threading.Event()

    def wait_for_error(self, timeout: float) -> Optional[Exception]:
        """Waits up to ``timeout`` seconds for a refusal; returns it or None.

        The engine only answers failures, so None after the wait means
        "not refused so far", not a confirmation.
        """
        self._answered.wait(timeout)
        return self.error

    def _refused(self, error: Exception) -> None:
        self.error = error
        self._answered.set()

    def frame(self) -> Dict[str, Any]:
        raise NotImplementedError

    def undo_frame(self) -> Optional[Dict[str, Any]]:
        return None

    def unregister(self) -> None:
        """Removes the registration here and on the engine. Idempotent.

        Safe from any thread. Does not block beyond one send.
        """
        self._worker._unregister(self)


class FunctionRef(_Registration):
    """A function this worker serves. ``unregister()`` withdraws it.

    Attributes:
        id: The function id.
        error: A :class:`RegistrationRejectedError` once the engine has
            refused the id (another worker in the namespace owns it); None
            while the engine has said nothing (success is silent).
    """

    kind = "function"

    def __init__(
        self,
        worker: "Worker",
        function_id: str,
        handler: Callable[..., Any],
        description: Optional[str],
        request_format: Any,
        response_format: Any,
        metadata: Any,
    ) -> None:
        super().__init__(worker, function_id)
        self.id = function_id
        self.adapter = HandlerAdapter(handler)
        self.description = description
        self.request_format = request_format
        self.response_format = response_format
        self.metadata = metadata

    def frame(self) -> Dict[str, Any]:
        frame = {"type": _protocol.REGISTERFUNCTION, "id": self.id}
        optional = {
            "description": self.description,
            "request_format": self.request_format,
            "response_format": self.response_format,
            "metadata": self.metadata,
        }
        frame.update({k: v for k, v in optional.items() if v is not None})
        return frame

    def undo_frame(self) -> Dict[str, Any]:
        return {"type": _protocol.UNREGISTERFUNCTION, "id": self.id}

    def __repr__(self) -> str:
        return "FunctionRef(%r)" % self.id


class Trigger(_Registration):
    """A binding of a trigger type to a function.

    Attributes:
        id: The binding's UUID, stable across reconnects.
        error: The engine's refusal, as an :class:`InvocationError`, once a
            ``triggerregistrationresult`` with an error has arrived; None
            while the engine has said nothing (success is silent).
    """

    kind = "trigger"

    def __init__(
        self,
        worker: "Worker",
        trigger_type: str,
        function_id: str,
        config: Any,
        metadata: Any,
        namespace: Optional[str],
    ) -> None:
        super().__init__(worker, _protocol.new_id())
        self.id = self.key
        self.trigger_type = trigger_type
        self.function_id = function_id
        self.config = config
        self.metadata = metadata
        self.namespace = namespace

    def frame(self) -> Dict[str, Any]:
        frame = {
            "type": _protocol.REGISTERTRIGGER,
            "id": self.id,
            "trigger_type": self.trigger_type,
            "function_id": self.function_id,
            "config": self.config,
        }
        if self.metadata is not None:
            frame["metadata"] = self.metadata
        if self.namespace is not None:
            frame["namespace"] = self.namespace
        return frame

    def undo_frame(self) -> Dict[str, Any]:
        return {
            "type": _protocol.UNREGISTERTRIGGER,
            "id": self.id,
            "trigger_type": self.trigger_type,
        }

    def __repr__(self) -> str:
        return "Trigger(%r, %r -> %r)" % (self.id, self.trigger_type, self.function_id)


class TriggerConfig:
    """A binding the engine relays to a trigger type's provider."""

    __slots__ = (
        "id",
        "trigger_type",
        "function_id",
        "config",
        "metadata",
        "namespace",
        "trigger_namespace",
    )

    def __init__(self, frame: Dict[str, Any]) -> None:
        self.id: str = frame["id"]
        self.trigger_type: str = frame.get("trigger_type") or ""
        self.function_id: str = frame.get("function_id") or ""
        self.config = frame.get("config")
        self.metadata = frame.get("metadata")
        self.namespace: Optional[str] = frame.get("namespace")
        self.trigger_namespace: Optional[str] = frame.get("trigger_namespace")

    def __repr__(self) -> str:
        return "TriggerConfig(%r, %r -> %r)" % (
            self.id,
            self.trigger_type,
            self.function_id,
        )


class TriggerTypeRef(_Registration):
    """A trigger type this worker provides, with its provider object.

    The provider has ``register_trigger(config)`` and
    ``unregister_trigger(config)``, each given a :class:`TriggerConfig`.
    They run on handler threads; ``register_trigger`` raising refuses the
    binding.
    """

    kind = "trigger type"

    def __init__(
        self, worker: "Worker", trigger_type_id: str, description: str, provider: Any
    ) -> None:
        super().__init__(worker, trigger_type_id)
        self.id = trigger_type_id
        self.description = description
        self.provider = provider

    def frame(self) -> Dict[str, Any]:
        return {
            "type": _protocol.REGISTERTRIGGERTYPE,
            "id": self.id,
            "description": self.description,
        }

    def __repr__(self) -> str:
        return "TriggerTypeRef(%r)" % self.id


class Registrations:
    """The ordered set of registrations. Thread-safe."""

    def __init__(self) -> None:
        # Guards the three maps and every entry's sent_generation.
        self._registrations_lock = threading.Lock()
        self._maps: Dict[str, Dict[str, _Registration]] = {
            TriggerTypeRef.kind: {},
            FunctionRef.kind: {},
            Trigger.kind: {},
        }

    def add(self, registration: _Registration) -> None:
        """Stores a registration; ValueError if its id is already taken."""
        with self._registrations_lock:
            table = self._maps[registration.kind]
            if registration.key in table:
                raise ValueError(
                    "%s %r is already registered"
                    % (registration.kind, registration.key)
                )
            table[registration.key] = registration

    def remove(self, registration: _Registration) -> bool:
        """Forgets a registration; returns True if it had been sent."""
        with self._registrations_lock:
            table = self._maps[registration.kind]
            if table.get(registration.key) is not registration:
                return False
            del table[registration.key]
            return registration.sent_generation is not None

    def claim(self, registration: _Registration, generation: int) -> bool:
        """Marks one registration as sent on ``generation``; False if it was."""
        with self._registrations_lock:
            current = self._maps[registration.kind].get(registration.key)
            if (
                current is not registration
                or registration.sent_generation == generation
            ):
                return False
            registration.sent_generation = generation
            return True

    def claim_all(self, generation: int) -> List[_Registration]:
        """Claims every registration not yet sent on ``generation``, in replay
        order: trigger types, then functions, then triggers."""
        claimed = []
        with self._registrations_lock:
            for table in self._maps.values():
                for registration in table.values():
                    if registration.sent_generation != generation:
                        registration.sent_generation = generation
                        claimed.append(registration)
        return claimed

    def function(self, function_id: str) -> Optional[FunctionRef]:
        with self._registrations_lock:
            found = self._maps[FunctionRef.kind].get(function_id)
        return found if isinstance(found, FunctionRef) else None

    def trigger(self, trigger_id: str) -> Optional[Trigger]:
        with self._registrations_lock:
            found = self._maps[Trigger.kind].get(trigger_id)
        return found if isinstance(found, Trigger) else None

    def trigger_type(self, type_id: str) -> Optional[TriggerTypeRef]:
        with self._registrations_lock:
            found = self._maps[TriggerTypeRef.kind].get(type_id)
        return found if isinstance(found, TriggerTypeRef) else None

    def function_ids(self) -> List[str]:
        with self._registrations_lock:
            return list(self._maps[FunctionRef.kind])
