"""The connection thread: connect, register, read, detect death, reconnect.

One named thread per worker runs this loop for the worker's whole life. It is
also the only reader of the socket, so connections can never overlap: the
old socket is aborted before a new one is dialled, and a reconnect is a turn
of the loop, never a nested call, so the stack does not grow.

Liveness: every received frame counts as a sign of life. After
``ping_interval`` seconds of silence the thread sends a WebSocket ping; if
nothing at all arrives within ``ping_timeout`` after that, the connection is
declared dead. Any close, clean or not, leads to a reconnect; only
``close()`` or a fatal rejection ends the loop.
"""

import logging
import threading
import time
from typing import TYPE_CHECKING, Optional

from ._concurrency import Handle
from ._errors import ConnectionLostError
from ._state import ConnectionState
from ._transport import BINARY, CLOSE, TEXT, Dialer, Transport

if TYPE_CHECKING:  # pragma: no cover
    from ._worker import Worker

logger = logging.getLogger(__name__)


class ConnectionLoop:
    """Owns the socket lifecycle of one worker.

    Threading: ``start`` and ``stop`` may be called from any thread; every
    other method runs on the connection thread.
    """

    def __init__(self, worker: "Worker") -> None:
        self._worker = worker
        self._options = worker.options
        self._stopping = threading.Event()
        self._thread: Optional[Handle] = None
        self._generation = 0
        self._registered_by: Optional[float] = None
        self._registered = False

        # Guards _current and _dialing; both are used outside the lock.
        self._current_lock = threading.Lock()
        self._current: Optional[Transport] = None
        self._dialing: Optional[Dialer] = None
        self.thread_ident: Optional[int] = None

    @property
    def transport(self) -> Optional[Transport]:
        """The open transport, or None between connections."""
        with self._current_lock:
            return self._current

    def start(self) -> None:
        self._thread = self._worker._driver.spawn(
            "iii-connection-%s" % self._worker.name, self._run
        )

    def stop(self, timeout: float) -> bool:
        """Ends the loop, closing the socket with 1000; True if joined in time.

        A connection attempt in progress is aborted. Returns within about
        ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        self._stopping.set()
        with self._current_lock:
            transport, dialing = self._current, self._dialing
        if dialing is not None:
            dialing.abort()
        if transport is not None:
            transport.close(timeout=min(1.0, timeout / 2))
        timeout = max(0.0, deadline - time.monotonic())

        thread = self._thread
        if thread is None or thread.ident == threading.get_ident():
            return True
        return thread.join(timeout)

    def mark_registered(self, transport: Transport) -> None:
        """Called when the engine has acknowledged this connection's announce."""
        if transport is self.transport:
            self._registered_by = None
            self._registered = True

    def _run(self) -> None:
        self.thread_ident = threading.get_ident()
        attempt = 0
        while not self._stopping.is_set():
            try:
                if self._connect_and_serve():
                    attempt = 0
            except (Exception, SystemExit):
                # Never die silently: log, drop the socket, and try again.
                logger.exception(
                    "worker %s: connection thread error", self._worker.name
                )
                self._drop_current("internal error")
            if self._stopping.is_set():
                return

            if self._options.reconnect.exhausted(attempt):
                self._worker._give_up(attempt)
                return
            delay = self._options.reconnect.delay(attempt)
            attempt += 1
            logger.info(
                "worker %s reconnecting to %s in %.2fs (attempt %d)",
                self._worker.name,
                self._options.url,
                delay,
                attempt,
            )
            self._stopping.wait(delay)

    def _connect_and_serve(self) -> bool:
        """One connection's life; True if the engine registered the worker.

        A socket that opens but is never acknowledged counts as a failed
        attempt, so ``max_retries`` also ends a loop against a silent peer.
        """
        self._registered = False
        transport = self._connect_once()
        if transport is None:
            return False
        reason = self._serve(transport)
        self._lose(transport, reason)
        return self._registered

    def _drop_current(self, reason: str) -> None:
        transport = self.transport
        if transport is not None:
            self._lose(transport, reason)

    def _dial(self) -> Optional[Transport]:
        options = self._options
        logger.debug(
            "worker %s dialing %s with headers %s",
            self._worker.name,
            options.url,
            options.redacted_headers(),
        )
        dialer = Dialer(options.sslopt)
        with self._current_lock:
            if self._stopping.is_set():
                return None
            self._dialing = dialer
        try:
            return dialer.connect(
                options.url,
                options.headers,
                options.handshake_timeout,
                options.ping_timeout,
                self._generation,
            )
        except ConnectionLostError as exc:
            if not self._stopping.is_set():
                logger.warning("worker %s: %s", self._worker.name, exc)
            return None
        finally:
            with self._current_lock:
                self._dialing = None

    def _connect_once(self) -> Optional[Transport]:
        self._generation += 1
        options = self._options
        transport = self._dial()
        if transport is None:
            return None

        with self._current_lock:
            if self._stopping.is_set():
                transport.release()
                return None
            self._current = transport

        try:
            self._worker._on_open(transport)
        except ConnectionLostError as exc:
            self._lose(transport, str(exc))
            return None
        self._registered_by = time.monotonic() + options.handshake_timeout
        return transport

    def _serve(self, transport: Transport) -> str:
        """Reads until the connection ends; returns why it ended."""
        options = self._options
        tick = min(1.0, options.ping_interval / 4, options.ping_timeout / 4)
        last_seen = time.monotonic()
        ping_sent: Optional[float] = None
        try:
            while True:
                if transport.readable(tick):
                    opcode, payload = transport.recv_frame()
                    last_seen, ping_sent = time.monotonic(), None
                    if opcode == CLOSE:
                        return "engine closed the connection (%s)" % _code(payload)
                    self._deliver(opcode, payload, transport)
                    continue
                ping_sent = self._keep_alive(transport, last_seen, ping_sent)
        except ConnectionLostError as exc:
            return str(exc)

    def _deliver(self, opcode: int, payload: bytes, transport: Transport) -> None:
        if opcode == TEXT:
            if len(payload) > self._options.max_message_size:
                logger.warning(
                    "dropped a %d-byte frame over the %d-byte limit",
                    len(payload),
                    self._options.max_message_size,
                )
                return
            self._worker._dispatcher.dispatch(payload, transport)
        elif opcode == BINARY:
            logger.warning(
                "dropped a binary frame of %d bytes: the engine only sends text",
                len(payload),
            )

    def _keep_alive(
        self, transport: Transport, last_seen: float, ping_sent: Optional[float]
    ) -> Optional[float]:
        now = time.monotonic()
        if self._registered_by is not None and now > self._registered_by:
            raise ConnectionLostError(
                "engine did not acknowledge the worker registration in time"
            )
        if ping_sent is not None:
            if now - ping_sent > self._options.ping_timeout:
                raise ConnectionLostError(
                    "no answer to ping for %.1fs" % (now - ping_sent)
                )
            return ping_sent
        if now - last_seen >= self._options.ping_interval:
            transport.send_ping()
            return now
        return None

    def _lose(self, transport: Transport, reason: str) -> None:
        transport.release()
        with self._current_lock:
            if self._current is transport:
                self._current = None
        self._registered_by = None

        if self._stopping.is_set():
            logger.info("worker %s disconnected", self._worker.name)
            return
        self._worker._on_lost(transport, reason)
        self._worker._state.set(ConnectionState.RECONNECTING)


def _code(payload: bytes) -> str:
    if len(payload) >= 2:
        return "code %d" % int.from_bytes(payload[:2], "big")
    return "no status code"
