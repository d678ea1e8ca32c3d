"""Outbound calls: ``trigger`` and its variants, and the offline queue.

A call with a result is registered in the pending map before its frame is
sent, and fails at once with :class:`ConnectionLostError` if its connection
drops. While the worker is disconnected a call waits for the connection
within its own timeout; a fire-and-forget frame waits in a bounded queue
instead, and a full queue raises to its caller.
"""

import concurrent.futures
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Union

from . import _protocol, _validation
from ._actions import (
    Action,
    TriggerActionEnqueue,
    TriggerActionVoid,
    is_void,
    wire_action,
)
from ._errors import (
    BlockingCallError,
    ConnectionLostError,
    FrameValidationError,
    IIIError,
    InvocationTimeoutError,
)
from ._handlers import current_invocation
from ._offline import OfflineQueue
from ._options import check_namespace, check_seconds
from ._pending import Pending
from ._state import ConnectionState
from ._transport import Transport

if TYPE_CHECKING:  # pragma: no cover
    from ._connection import ConnectionLoop
    from ._options import WorkerOptions
    from ._pending import PendingInvocations
    from ._pool import HandlerPool
    from ._registrations import Registrations
    from ._state import StateTracker

logger = logging.getLogger(__name__)

# A sync caller waits this much longer than the deadline thread, so that the
# deadline thread, which also cleans the pending map, is the one that fires.
_WAIT_MARGIN = 5.0


class CallsMixin:
    """The calling half of :class:`~iii_sync.Worker`."""

    # Set by Worker.__init__.
    name: str
    options: "WorkerOptions"
    _registrations: "Registrations"
    namespace: Optional[str]
    _pool: "HandlerPool"
    _pending: "PendingInvocations"
    _connection: "ConnectionLoop"
    _state: "StateTracker"

    def _ensure_open(self) -> None:
        raise NotImplementedError

    def _init_calls(self) -> None:
        self._offline = OfflineQueue(self.options.max_offline_queue)

    def trigger(
        self,
        function_id: Union[str, Mapping[str, Any]],
        payload: Any = None,
        *,
        timeout: Optional[float] = None,
        metadata: Any = None,
        namespace: Optional[str] = None,
        action: Action = None,
    ) -> Any:
        """Calls a function and blocks until its result arrives.

        ``function_id`` may also be the official SDK's request dict:
        ``{"function_id", "payload", "action", "timeout_ms", "metadata",
        "namespace"}``. With a void action it returns None at once; with an
        enqueue action it returns the engine's receipt.

        Blocks for at most ``timeout`` seconds (default
        ``invocation_timeout``), including any wait for the connection.
        Called from a handler, the wait does not hold a handler slot.

        Raises:
            InvocationError: the engine or the function answered with an error.
            InvocationTimeoutError: no result within the timeout.
            ConnectionLostError: the connection dropped while the call was out.
            FrameValidationError: the payload is not JSON or too large.
            ValueError: a blank namespace.
            WorkerClosedError, RegistrationRejectedError: the worker is done.
        """
        request = self._request(
            function_id, payload, timeout, metadata, namespace, action
        )
        if is_void(request["action"]):
            self._send_void(request)
            return None

        self._check_may_block()
        future = self._start_call(request)

        # Waiting on a function this worker serves frees the handler slot,
        # so the nested invocation can run (see _pool). Waits on other
        # workers keep their slot, which keeps the thread count bounded.
        if self._registrations.function(request["function_id"]) is not None:
            with self._pool.blocking():
                return self._wait(future, request)
        return self._wait(future, request)

    def trigger_async(
        self,
        function_id: Union[str, Mapping[str, Any]],
        payload: Any = None,
        *,
        timeout: Optional[float] = None,
        metadata: Any = None,
        namespace: Optional[str] = None,
        action: Action = None,
    ) -> "concurrent.futures.Future[Any]":
        """Like :meth:`trigger`, but returns a Future at once.

        The Future fails with the errors :meth:`trigger` raises. It is settled
        on an internal thread, so its callbacks must be quick. Errors in the
        request itself (a blank namespace, a payload that is not JSON) raise
        here, before anything is sent.
        """
        request = self._request(
            function_id, payload, timeout, metadata, namespace, action
        )
        if is_void(request["action"]):
            self._send_void(request)
            done: concurrent.futures.Future[Any] = concurrent.futures.Future()
            done.set_result(None)
            return done
        return self._start_call(request)

    def trigger_void(
        self,
        function_id: str,
        payload: Any = None,
        *,
        metadata: Any = None,
        namespace: Optional[str] = None,
    ) -> None:
        """Sends a call without waiting for, or getting, any result.

        Returns at once. While disconnected the frame is queued (bounded by
        ``max_offline_queue``) and sent on the next connection.

        Raises:
            ConnectionLostError: the offline queue is full.
            FrameValidationError, ValueError, WorkerClosedError: as for trigger.
        """
        self.trigger(
            function_id,
            payload,
            metadata=metadata,
            namespace=namespace,
            action=TriggerActionVoid(),
        )

    def enqueue(
        self,
        queue: str,
        function_id: str,
        payload: Any = None,
        *,
        timeout: Optional[float] = None,
        metadata: Any = None,
        namespace: Optional[str] = None,
    ) -> Any:
        """Hands a call to the engine's queue ``queue``; returns the receipt.

        Raises:
            InvocationError: ``enqueue_error`` when the engine has no queue.
            Others: as for :meth:`trigger`.
        """
        return self.trigger(
            function_id,
            payload,
            timeout=timeout,
            metadata=metadata,
            namespace=namespace,
            action=TriggerActionEnqueue(queue),
        )

    # Building the request --------------------------------------------------

    def _request(
        self,
        function_id: Union[str, Mapping[str, Any]],
        payload: Any,
        timeout: Optional[float],
        metadata: Any,
        namespace: Optional[str],
        action: Action,
    ) -> Dict[str, Any]:
        if isinstance(function_id, Mapping):
            return self._request_from_dict(function_id)

        if not isinstance(function_id, str) or not function_id.strip():
            raise ValueError("function_id must be a non-blank string")
        if namespace is not None:
            check_namespace(namespace)
        elif not function_id.startswith(_protocol.ENGINE_PREFIX):
            namespace = self.namespace
        return {
            "function_id": function_id,
            "payload": payload,
            "timeout": self._timeout(timeout),
            "metadata": metadata,
            "namespace": namespace,
            "action": wire_action(action),
        }

    def _request_from_dict(self, request: Mapping[str, Any]) -> Dict[str, Any]:
        timeout_ms = request.get("timeout_ms")
        return self._request(
            request.get("function_id", ""),
            request.get("payload"),
            timeout_ms / 1000.0 if timeout_ms else None,
            request.get("metadata"),
            request.get("namespace"),
            request.get("action"),
        )

    def _timeout(self, timeout: Optional[float]) -> float:
        if timeout is None:
            return self.options.invocation_timeout
        return check_seconds("timeout", timeout)

    def _check_may_block(self) -> None:
        me = threading.get_ident()
        if me in (self._connection.thread_ident, self._pending.thread_ident):
            raise BlockingCallError(
                "trigger() would block worker %s's own %s thread; use "
                "trigger_async() or trigger_void() here"
                % (
                    self.name,
                    "connection" if me == self._connection.thread_ident else "deadline",
                )
            )

    def _encode_call(
        self, request: Dict[str, Any], invocation_id: Optional[str]
    ) -> bytes:
        frame: Dict[str, Any] = {
            "type": _protocol.INVOKEFUNCTION,
            "function_id": request["function_id"],
            "data": request["payload"],
        }
        if invocation_id is not None:
            frame["invocation_id"] = invocation_id
        for key in ("metadata", "namespace", "action"):
            if request[key] is not None:
                frame[key] = request[key]
        _add_trace_headers(frame)

        _validation.check(frame, _validation.TO_ENGINE)
        try:
            data = _protocol.encode_bytes(frame)
        except ValueError as exc:
            raise FrameValidationError(
                frame["type"], "$.data", "cannot be sent as JSON: %s" % exc
            ) from exc
        if len(data) > self.options.max_message_size:
            raise FrameValidationError(
                frame["type"],
                "$",
                "message exceeds the %d-byte limit" % self.options.max_message_size,
            )
        return data

    # Calls with a result ---------------------------------------------------

    def _start_call(self, request: Dict[str, Any]) -> "concurrent.futures.Future[Any]":
        self._ensure_open()
        invocation_id = _protocol.new_id()
        text = self._encode_call(request, invocation_id)
        deadline = time.monotonic() + request["timeout"]

        # A frame that could not be sent never reached the engine, so it is
        # safe to send it again on the next connection, within the deadline.
        while True:
            transport = self._await_transport(deadline, request)
            try:
                entry = self._pending.add(
                    request["function_id"],
                    transport.generation,
                    max(0.001, deadline - time.monotonic()),
                    invocation_id,
                )
            except ConnectionLostError:
                continue
            if self._send_call(transport, entry, text):
                return entry.future

    def _pending_call(
        self,
        transport: Transport,
        function_id: str,
        data: Any,
        namespace: Optional[str],
        timeout: float,
    ) -> Pending:
        """Sends a call on one given transport (used by the announce)."""
        request = {
            "function_id": function_id,
            "payload": data,
            "timeout": timeout,
            "metadata": None,
            "namespace": namespace,
            "action": None,
        }
        invocation_id = _protocol.new_id()
        text = self._encode_call(request, invocation_id)
        entry = self._pending.add(
            function_id, transport.generation, timeout, invocation_id
        )
        if not self._send_call(transport, entry, text):
            raise ConnectionLostError("could not send %s" % function_id)
        return entry

    def _send_call(self, transport: Transport, entry: Pending, text: bytes) -> bool:
        """Sends a registered call; on failure forgets it and returns False."""
        try:
            transport.send_text(text)
            logger.debug(
                "sent invokefunction %s %s", entry.function_id, entry.invocation_id
            )
            return True
        except ConnectionLostError as exc:
            logger.debug("%s not sent: %s", entry.function_id, exc)
            self._pending.discard(entry.invocation_id)
            return False

    def _await_transport(self, deadline: float, request: Dict[str, Any]) -> Transport:
        while True:
            self._ensure_open()
            transport = self._connection.transport
            if (
                transport is not None
                and not transport.closed
                and self._state.current == ConnectionState.CONNECTED
            ):
                return transport

            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InvocationTimeoutError(
                    request["timeout"],
                    function_id=request["function_id"],
                    reason="not connected to %s (state %s); nothing was sent"
                    % (self.options.url, self._state.current.value),
                )
            self._state.wait_for(
                lambda s: s == ConnectionState.CONNECTED or s.final,
                min(remaining, 0.05 if transport is not None else 1.0),
            )

    def _wait(
        self, future: "concurrent.futures.Future[Any]", request: Dict[str, Any]
    ) -> Any:
        try:
            return future.result(request["timeout"] + _WAIT_MARGIN)
        except IIIError:
            raise
        except concurrent.futures.TimeoutError:
            raise InvocationTimeoutError(
                request["timeout"], function_id=request["function_id"]
            ) from None

    # Fire and forget -------------------------------------------------------

    def _send_void(self, request: Dict[str, Any]) -> None:
        self._ensure_open()
        text = self._encode_call(request, None)
        # Frames still queued from an outage go first; a new one waits its turn.
        transport = self._connection.transport
        connected = self._state.current == ConnectionState.CONNECTED
        if transport is not None and connected and self._offline.empty:
            try:
                transport.send_text(text)
                return
            except ConnectionLostError:
                logger.debug(
                    "void call to %s queued: connection dropped", request["function_id"]
                )

        self._offline.put(text, request["function_id"])

        # The connection may have come back while the frame was queued.
        transport = self._connection.transport
        if transport is not None and self._state.current == ConnectionState.CONNECTED:
            self._flush_offline(transport)

    def _flush_offline(self, transport: Transport) -> None:
        self._offline.drain(transport.send_text)

    def _fail_offline(self, error: IIIError) -> None:
        self._offline.clear(error)


def _add_trace_headers(frame: Dict[str, Any]) -> None:
    # A call made inside a handler continues the invocation's trace.
    context = current_invocation()
    if context is None:
        return
    if context.traceparent is not None:
        frame["traceparent"] = context.traceparent
    if context.baggage is not None:
        frame["baggage"] = context.baggage


__all__ = ["CallsMixin"]
