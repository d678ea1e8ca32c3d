"""The public worker: registration, calls, connection state and shutdown.

A :class:`Worker` ties the parts together: the connection thread
(:mod:`._connection`), the dispatcher of inbound frames (:mod:`._dispatch`),
the handler pool (:mod:`._pool`), the pending-call map (:mod:`._pending`) and
the replay set (:mod:`._registrations`). Outbound calls live in
:mod:`._calls`, which this class inherits.
"""

import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Optional

from . import _protocol, _validation
from ._announce import Announcer
from ._calls import CallsMixin
from ._concurrency import make_driver
from ._connection import ConnectionLoop
from ._dispatch import Dispatcher
from ._errors import (
    ConnectionLostError,
    FrameValidationError,
    IIIError,
    WorkerClosedError,
)
from ._options import WorkerOptions, check_id, check_namespace
from ._pending import Pending, PendingInvocations
from ._pool import HandlerPool
from ._registrations import (
    FunctionRef,
    Registrations,
    Trigger,
    TriggerTypeRef,
    _Registration,
)
from ._state import ConnectionState, StateCallback, StateTracker
from ._transport import Transport

logger = logging.getLogger(__name__)

DEFAULT_CLOSE_TIMEOUT = 10.0


class Worker(CallsMixin):
    """A connection to the iii engine that serves and calls functions.

    Create one with :func:`iii_sync.register_worker`. Every public method is
    thread-safe and may be called from any thread, including from inside a
    handler, unless its docstring says otherwise.

    Attributes:
        options: The resolved :class:`WorkerOptions`.
        name: The worker name sent to the engine.
        namespace: The worker's namespace, or None for ``default``.
    """

    def __init__(self, url: Optional[str] = None, **options: Any) -> None:
        self.options = WorkerOptions(url, **options)
        self.name = self.options.name
        self.namespace = self.options.namespace
        self._driver = make_driver(self.options.concurrency)
        self._state = StateTracker(ConnectionState.CONNECTING)
        self._pending = PendingInvocations(self._driver)
        self._pool = HandlerPool(
            self._driver,
            self.options.max_workers,
            self.options.max_queued,
            "iii-handler-%s" % self.name,
        )
        self._registrations = Registrations()
        self._dispatcher = Dispatcher(self)
        self._connection = ConnectionLoop(self)
        self._announcer = Announcer(self)
        self._init_calls()

        self.fatal_error: Optional[IIIError] = None
        self._closed = threading.Event()

        # Guards _started and _closing, so start() and close() run once each.
        self._close_lock = threading.Lock()
        self._closing = False
        self._pid = os.getpid()
        self._started = False

    def __repr__(self) -> str:
        return "Worker(%r, %s, %s)" % (self.name, self.options.url, self.state.value)

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # Lifecycle -----------------------------------------------------------

    def start(self) -> "Worker":
        """Starts connecting in the background; a second call does nothing.

        Returns at once. :func:`iii_sync.register_worker` calls it for you.
        """
        with self._close_lock:
            if self._started or self._closing:
                return self
            self._started = True
        self._pending.start("iii-deadlines-%s" % self.name)
        self._connection.start()
        return self

    @property
    def state(self) -> ConnectionState:
        """The current :class:`ConnectionState`; ``CLOSED`` in a forked child."""
        if self._forked():
            return ConnectionState.CLOSED
        return self._state.current

    @property
    def worker_id(self) -> Optional[str]:
        """The UUID the engine gave the current connection; None before one."""
        return self._announcer.worker_id

    def on_state_change(self, callback: StateCallback) -> Callable[[], None]:
        """Calls ``callback(state)`` now, then on every transition.

        The first call runs on the calling thread; later ones on the thread
        that changed the state (usually the connection thread), so the
        callback must return quickly. An exception in it is logged and
        changes nothing.

        Returns:
            A function that unsubscribes the callback; calling it twice is fine.
        """
        return self._state.subscribe(callback)

    def wait_until_connected(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the engine has registered this worker.

        Returns:
            True when connected, False on timeout or when the worker failed
            or was closed.
        """
        self._state.wait_for(
            lambda s: s == ConnectionState.CONNECTED or s.final,
            timeout if timeout is not None else 1e9,
        )
        return self.state == ConnectionState.CONNECTED

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Stops the worker cleanly within ``timeout`` seconds. Idempotent.

        Takes no new invocations, lets running handlers finish and send their
        results, closes the socket with code 1000, fails calls still waiting
        with :class:`WorkerClosedError`, and joins every thread. Returns within
        ``timeout`` even when the engine has stopped answering; handlers still
        running then are abandoned with a warning.

        May be called from any thread, including a handler or a state
        listener (it then does not wait for that handler or thread itself).
        Raises nothing.
        """
        with self._close_lock:
            if self._closing:
                # A handler or internal thread must not wait: the close in
                # progress may be waiting for it.
                if not self._on_own_thread():
                    self._closed.wait(timeout)
                return
            self._closing = True
        if self._forked():
            # The socket and threads belong to the parent process: leave them.
            self._finish_close("in a forked child; the parent's connection is kept")
            return
        try:
            self._shut_down(time.monotonic() + timeout)
        finally:
            self._finish_close("")

    def _shut_down(self, deadline: float) -> None:
        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        # Handlers first, while the socket can still carry their results;
        # the rest of the budget closes the socket and joins the threads.
        self._pool.shutdown(left() * 0.7)
        self._connection.stop(left() * 0.7)
        self._pending.stop(self._closed_error, left())

    def _finish_close(self, how: str) -> None:
        self._fail_offline(WorkerClosedError("worker %s closed" % self.name))
        self._state.set(ConnectionState.CLOSED)
        self._closed.set()
        logger.info("worker %s closed%s", self.name, " " + how if how else "")

    def run_forever(self, close_timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Serves until :meth:`close`, SIGINT or SIGTERM, then closes cleanly.

        Call it from the main thread to get signal handling; elsewhere it
        just waits for :meth:`close`. After a signal it raises ``SystemExit``
        with ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM); a second
        signal during shutdown exits the process at once. ``close_timeout`` is
        the grace period given to :meth:`close`.
        """
        from ._signals import serve_until_signal

        serve_until_signal(self, close_timeout)

    # Registration --------------------------------------------------------

    def register_function(
        self,
        function_id: str,
        handler: Callable[..., Any],
        *,
        description: Optional[str] = None,
        request_format: Any = None,
        response_format: Any = None,
        metadata: Any = None,
    ) -> FunctionRef:
        """Serves ``function_id`` with ``handler`` from now on, across reconnects.

        Returns at once: the engine does not acknowledge registrations, and a
        conflict is logged at WARNING when it reports one.

        Raises:
            ValueError: a blank id, or one this worker already registered.
            TypeError: ``handler`` is not callable.
        """
        check_id(function_id, "function_id")
        ref = FunctionRef(
            self,
            function_id,
            handler,
            description,
            request_format,
            response_format,
            metadata,
        )
        self._register(ref)
        return ref

    def function(self, function_id: str, **kwargs: Any) -> Callable[..., Any]:
        """Decorator form of :meth:`register_function`; returns the function."""

        def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.register_function(function_id, handler, **kwargs)
            return handler

        return decorate

    def register_trigger(
        self,
        trigger_type: str,
        function_id: str,
        config: Any,
        *,
        metadata: Any = None,
        namespace: Optional[str] = None,
    ) -> Trigger:
        """Binds a trigger of ``trigger_type`` to ``function_id``.

        ``namespace`` is the target function's namespace; it defaults to the
        worker's. A refusal from the engine is logged at WARNING and stored
        on the returned trigger's ``error``.

        Raises:
            ValueError: a blank type, function id or namespace.
        """
        check_id(trigger_type, "trigger_type")
        check_id(function_id, "function_id")
        if namespace is not None:
            check_namespace(namespace)
        trigger = Trigger(
            self,
            trigger_type,
            function_id,
            config,
            metadata,
            namespace if namespace is not None else self.namespace,
        )
        self._register(trigger)
        return trigger

    def register_trigger_type(
        self, trigger_type_id: str, description: str, provider: Any
    ) -> TriggerTypeRef:
        """Provides a trigger type; ``provider`` gets the bindings.

        ``provider.register_trigger(config)`` and
        ``provider.unregister_trigger(config)`` are called on handler threads
        with a :class:`TriggerConfig` when the engine relays a binding; a
        raising ``register_trigger`` refuses it.

        Raises:
            ValueError: a blank id, or one already provided by this worker.
        """
        check_id(trigger_type_id, "trigger_type_id")
        for method in ("register_trigger", "unregister_trigger"):
            if not callable(getattr(provider, method, None)):
                raise TypeError("provider needs a %s(config) method" % method)
        ref = TriggerTypeRef(self, trigger_type_id, description, provider)
        self._register(ref)
        return ref

    def sync_registrations(self, timeout: float = 5.0) -> None:
        """Blocks until the engine has applied every registration sent so far.

        The engine answers no registration, but handles one connection's
        frames in order, so the answer to a cheap call sent afterwards proves
        the earlier ones were applied.

        Raises:
            InvocationTimeoutError, ConnectionLostError: as for :meth:`trigger`.
        """
        self.trigger("engine::functions::list", {"prefix": "\x00"}, timeout=timeout)

    def _register(self, registration: _Registration) -> None:
        self._ensure_open()
        self._encode_frame(registration.frame())
        self._registrations.add(registration)
        transport = self._connection.transport
        if transport is not None and self._registrations.claim(
            registration, transport.generation
        ):
            self._send_quietly(transport, registration.frame())

    def _unregister(self, registration: _Registration) -> None:
        self._ensure_not_forked()
        was_sent = self._registrations.remove(registration)
        undo = registration.undo_frame()
        transport = self._connection.transport
        if was_sent and undo is not None and transport is not None:
            self._send_quietly(transport, undo)

    # Connection events (connection thread) -------------------------------

    def _on_open(self, transport: Transport) -> None:
        self._announcer.on_open(transport)

    def _on_lost(self, transport: Transport, reason: str) -> None:
        lost = self._pending.fail_generation(
            transport.generation, lambda e: self._lost_error(e, reason)
        )
        logger.warning(
            "worker %s lost its connection: %s; %d call(s) failed",
            self.name,
            reason,
            lost,
        )

    def _give_up(self, attempts: int) -> None:
        logger.error(
            "worker %s gave up after %d reconnect attempts", self.name, attempts
        )
        self._fail(
            ConnectionLostError(
                "gave up connecting to %s after %d attempts"
                % (self.options.url, attempts)
            )
        )

    def _fail(self, error: IIIError) -> None:
        """A fatal error: no more reconnects; every waiting call gets ``error``."""
        if self.fatal_error is None:
            self.fatal_error = error
            logger.error("worker %s failed: %s", self.name, error)
        self._connection._stopping.set()
        transport = self._connection.transport
        if transport is not None:
            transport.close()
        self._pending.fail_generation(1 << 62, lambda entry: error)
        self._fail_offline(error)
        self._state.set(ConnectionState.FAILED)

    # Sending ---------------------------------------------------------------

    def _encode_frame(self, frame: Dict[str, Any]) -> bytes:
        """Validates and encodes a frame; raises FrameValidationError."""
        _validation.check(frame, _validation.TO_ENGINE)
        try:
            data = _protocol.encode_bytes(frame)
        except ValueError as exc:
            raise FrameValidationError(frame["type"], "$", str(exc)) from exc
        if len(data) > self.options.max_message_size:
            raise FrameValidationError(
                frame["type"],
                "$",
                "message exceeds the %d-byte limit" % self.options.max_message_size,
            )
        return data

    def _send_frame(self, transport: Transport, frame: Dict[str, Any]) -> None:
        """Validates, encodes and sends; raises ConnectionLostError and
        FrameValidationError."""
        transport.send_text(self._encode_frame(frame))
        logger.debug("sent %s %s", frame["type"], frame.get("id", ""))

    def _send_quietly(self, transport: Transport, frame: Dict[str, Any]) -> None:
        # A registration that cannot be sent now is replayed on reconnect.
        try:
            self._send_frame(transport, frame)
        except ConnectionLostError as exc:
            logger.debug("%s not sent (%s); it will be replayed", frame["type"], exc)

    def _send_result(
        self, transport: Transport, frame: Dict[str, Any], text: bytes
    ) -> None:
        """Sends a handler's answer, only on the connection it came from."""
        current = self._connection.transport
        if current is not transport:
            logger.warning(
                "result of %s (invocation %s) dropped: its connection "
                "is gone, and the engine has told the caller",
                frame["function_id"],
                frame.get("invocation_id"),
            )
            return
        try:
            transport.send_text(text)
            logger.debug(
                "sent invocationresult %s %s",
                frame["function_id"],
                frame.get("invocation_id"),
            )
        except ConnectionLostError as exc:
            logger.warning(
                "result of %s (invocation %s) lost: %s",
                frame["function_id"],
                frame.get("invocation_id"),
                exc,
            )

    # Helpers ---------------------------------------------------------------

    def _on_own_thread(self) -> bool:
        me = threading.get_ident()
        return self._pool.in_pool_thread() or me in (
            self._connection.thread_ident,
            self._pending.thread_ident,
        )

    def _forked(self) -> bool:
        return os.getpid() != self._pid

    def _ensure_open(self) -> None:
        self._ensure_not_forked()
        if self._closing:
            raise WorkerClosedError("worker %s is closed" % self.name)
        if self.fatal_error is not None:
            raise self.fatal_error

    def _ensure_not_forked(self) -> None:
        # A worker made before fork() lives on in the child without its
        # threads, and its socket is the parent's: refuse rather than share.
        if self._forked():
            raise WorkerClosedError(
                "worker %s was created in process %d before a fork; create a "
                "new worker in this process (%d)" % (self.name, self._pid, os.getpid())
            )

    def _closed_error(self, entry: Pending) -> IIIError:
        return WorkerClosedError(
            "worker %s closed while %s (invocation %s) was "
            "pending" % (self.name, entry.function_id, entry.invocation_id)
        )

    @staticmethod
    def _lost_error(entry: Pending, reason: str) -> IIIError:
        return ConnectionLostError(
            "connection lost while %s (invocation %s) was pending: %s"
            % (entry.function_id, entry.invocation_id, reason),
            function_id=entry.function_id,
            invocation_id=entry.invocation_id,
        )


__all__ = ["Worker"]
