"""The exception hierarchy of iii_sync.

Every exception the SDK raises derives from :class:`IIIError`. Where a builtin
exception fits, the subclass inherits it too, so ``except TimeoutError`` and
``except ValueError`` keep working in code that does not know iii_sync.
"""

from typing import Any, Optional


class IIIError(Exception):
    """Root of every error raised by iii_sync."""


class InvocationError(IIIError):
    """A function call ended with an error body instead of a result.

    Raise it from a handler to answer with a chosen ``code``; any other
    exception is answered with ``invocation_failed``. Callers receive it when
    the engine or the target reports an error.

    Attributes:
        code: The error code, for example ``function_not_found``.
        message: A human-readable description.
        stacktrace: The remote stack trace, when the target sent one.
        function_id: The function that was called, when known.
        invocation_id: The invocation's UUID, when known.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        stacktrace: Optional[str] = None,
        function_id: Optional[str] = None,
        invocation_id: Optional[str] = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.stacktrace = stacktrace
        self.function_id = function_id
        self.invocation_id = invocation_id

    def __str__(self) -> str:
        return "%s: %s" % (self.code, self.message)

    @classmethod
    def from_body(
        cls,
        body: Any,
        function_id: Optional[str] = None,
        invocation_id: Optional[str] = None,
    ) -> "InvocationError":
        """Builds an error from a wire ``error`` object, tolerating odd shapes."""
        if not isinstance(body, dict):
            return cls(
                "UNKNOWN",
                str(body),
                function_id=function_id,
                invocation_id=invocation_id,
            )

        code = body.get("code")
        message = body.get("message")
        stacktrace = body.get("stacktrace")
        return cls(
            code if isinstance(code, str) else "UNKNOWN",
            message if isinstance(message, str) else "<no message>",
            stacktrace=stacktrace if isinstance(stacktrace, str) else None,
            function_id=function_id,
            invocation_id=invocation_id,
        )


class InvocationTimeoutError(InvocationError, TimeoutError):
    """No result arrived within the call's timeout. Its code is ``TIMEOUT``."""

    def __init__(
        self,
        timeout: float,
        *,
        function_id: Optional[str] = None,
        invocation_id: Optional[str] = None,
        reason: Optional[str] = None,
    ) -> None:
        if reason is not None:
            message = "call to %s timed out after %.3gs: %s" % (
                function_id,
                timeout,
                reason,
            )
        else:
            message = "invocation %s of %s timed out after %.3gs" % (
                invocation_id,
                function_id,
                timeout,
            )
        super().__init__(
            "TIMEOUT",
            message,
            function_id=function_id,
            invocation_id=invocation_id,
        )
        self.timeout = timeout


class ConnectionLostError(IIIError, ConnectionError):
    """The connection dropped while a call was in flight, or could not be used.

    The call may or may not have run on the target; iii_sync never resends it.
    """

    def __init__(
        self,
        message: str,
        *,
        function_id: Optional[str] = None,
        invocation_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.function_id = function_id
        self.invocation_id = invocation_id


class FrameValidationError(IIIError, ValueError):
    """A frame does not match its JSON Schema.

    Raised before any byte is sent for an outbound frame.

    Attributes:
        frame_type: The frame's ``type`` field, when it has one.
        path: The JSON path of the failing value, such as ``$.data``.
        reason: What the schema check said.
    """

    def __init__(self, frame_type: Optional[str], path: str, reason: str) -> None:
        super().__init__(
            "invalid %s frame at %s: %s" % (frame_type or "untyped", path, reason)
        )
        self.frame_type = frame_type
        self.path = path
        self.reason = reason


class RegistrationRejectedError(IIIError):
    """The engine refused this worker's name: the worker cannot go on.

    Attributes:
        code: ``WORKER_NAMESPACE_CONFLICT`` or another engine code.
        namespace: The namespace of the conflict.
        worker_name: The name that is already taken, when the code is about names.
        function_id: The function id, when the code is about a function.
        owner_worker_id: The UUID of the connection holding the lease.
    """

    def __init__(
        self,
        code: str,
        namespace: Optional[str] = None,
        *,
        worker_name: Optional[str] = None,
        function_id: Optional[str] = None,
        owner_worker_id: Optional[str] = None,
    ) -> None:
        subject = worker_name or function_id or "registration"
        super().__init__(
            "%s: %r in namespace %r is held by worker %s"
            % (code, subject, namespace, owner_worker_id or "<engine>")
        )
        self.code = code
        self.namespace = namespace
        self.worker_name = worker_name
        self.function_id = function_id
        self.owner_worker_id = owner_worker_id


class WorkerClosedError(IIIError, RuntimeError):
    """The worker was closed, or is closing, and cannot take this request."""


class BlockingCallError(IIIError, RuntimeError):
    """A blocking call was made from a thread that must never block.

    The connection thread runs state listeners and settles futures; the
    deadline thread ends calls that time out. A blocking ``trigger()`` on
    either would wait for an answer only that same thread can deliver. Use
    ``trigger_async()`` or ``trigger_void()`` there, or hand the work to
    another thread.
    """
