"""The seam between the engine core and its in-process trigger providers.

The core owns bindings (``registertrigger`` frames and ``engine::register_trigger``
calls) and resolves each to a provider. In-process providers (``http``,
``cron``, ``state``, ``subscribe`` and the engine discovery types) implement
:class:`InProcessProvider`; the core calls ``register``/``unregister`` and the
provider fires by calling functions through a :class:`FunctionCaller`, which
is the engine's in-process call path (engine-protocol.md §7: a trigger-fired
call carries the binding's metadata, is routed in the binding's target
namespace, and gets no ``_caller_worker_id``).
"""

import sys
from typing import Any, Optional

from .._errors import IIIError

if sys.version_info >= (3, 8):
    from typing import Protocol
else:  # pragma: no cover - Python 3.7
    from typing_extensions import Protocol


class Binding:
    """One trigger binding as the core stores it.

    Attributes:
        id: The binding id chosen by the registering worker (or the engine).
        trigger_type: The trigger type id, such as ``http``.
        function_id: The target function.
        config: The binding's config, any JSON value.
        metadata: The binding's metadata, passed on every fire; None if unset.
        namespace: The target function's namespace (``default`` when absent).
    """

    __slots__ = ("id", "trigger_type", "function_id", "config", "metadata", "namespace")

    def __init__(
        self,
        id: str,
        trigger_type: str,
        function_id: str,
        config: Any,
        metadata: Any = None,
        namespace: str = "default",
    ) -> None:
        self.id = id
        self.trigger_type = trigger_type
        self.function_id = function_id
        self.config = config
        self.metadata = metadata
        self.namespace = namespace

    def __repr__(self) -> str:
        return "Binding(%r, %r -> %s::%s)" % (
            self.id,
            self.trigger_type,
            self.namespace,
            self.function_id,
        )


class TriggerRejected(IIIError, ValueError):  # noqa: N818 - reads as the event
    """A provider refuses a binding; ``str(exc)`` is the engine's message text.

    The core answers the registering worker with a ``triggerregistrationresult``
    whose error code is ``trigger_registration_failed`` and whose message is
    this text (engine-protocol.md §5.4).
    """


class CallFailed(IIIError):  # noqa: N818 - reads as the event
    """An in-process call ended with an error body.

    Attributes:
        code: The error code (``function_not_found``, ``invocation_stopped``, ...).
        message: The error message.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


class FunctionCaller(Protocol):
    """The engine's in-process call path, as providers see it."""

    def call(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = "default",
        metadata: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Calls a function and blocks for its result.

        May be called from any thread. Raises :class:`CallFailed` for an error
        result (including ``function_not_found`` with the no-period message of
        engine-protocol.md §4.9) and for a timeout (code ``timeout``).
        """


class InProcessProvider:
    """Base for trigger types served inside the engine process.

    Threading: ``register`` and ``unregister`` are called from the core's
    connection threads, possibly concurrently; implementations guard their own
    state. ``start`` and ``stop`` are called once each by ``LocalEngine``.
    """

    trigger_type = ""

    def register(self, binding: Binding) -> None:
        """Validates and activates a binding; raises TriggerRejected to refuse."""
        raise NotImplementedError

    def unregister(self, binding: Binding) -> None:
        """Deactivates a binding; unknown ids are ignored."""
        raise NotImplementedError

    def start(self) -> None:
        """Starts background threads or servers, if the provider has any."""

    def stop(self) -> None:
        """Stops everything ``start`` started; returns within a few seconds."""
