"""One WebSocket connection to the engine, on websocket-client.

A :class:`Transport` is used by exactly one reader (the worker's connection
thread) and any number of senders. Sends are serialised by a lock that guards
the socket's write side; reads wait in ``select`` with a short tick so that the
reader can also keep time for pings. A transport is never reused: every
reconnect makes a new one.
"""

import logging
import select
import socket
import threading
from typing import Any, Dict, Optional, Tuple

import websocket

from ._errors import ConnectionLostError

logger = logging.getLogger(__name__)

TEXT = websocket.ABNF.OPCODE_TEXT
BINARY = websocket.ABNF.OPCODE_BINARY
CLOSE = websocket.ABNF.OPCODE_CLOSE
PING = websocket.ABNF.OPCODE_PING
PONG = websocket.ABNF.OPCODE_PONG

NORMAL_CLOSURE = 1000

Frame = Tuple[int, bytes]

# Errors that mean the socket is gone, whatever layer noticed it.
_LOST = (websocket.WebSocketException, OSError, ValueError, AttributeError)


class Transport:
    """A connected WebSocket. Create with :meth:`open`.

    Args:
        ws: A connected websocket-client socket.
        generation: The worker's connection counter when this one opened.
        io_timeout: Seconds a blocked send or a half-received frame may take
            before the connection counts as dead.
    """

    def __init__(
        self, ws: websocket.WebSocket, generation: int, io_timeout: float
    ) -> None:
        self._ws = ws
        self.generation = generation
        ws.settimeout(io_timeout)

        # Guards the socket's write side: one frame at a time, whole.
        self._send_lock = threading.Lock()
        self._closed = threading.Event()

    @classmethod
    def open(
        cls,
        url: str,
        headers: Dict[str, str],
        handshake_timeout: float,
        io_timeout: float,
        generation: int,
        sslopt: Optional[Dict[str, Any]] = None,
    ) -> "Transport":
        """Connects and completes the handshake; blocks up to the timeout.

        ``sslopt`` is websocket-client's TLS options dict for ``wss://`` URLs,
        such as ``{"ca_certs": "/path/ca.pem"}``.

        Raises:
            ConnectionLostError: the engine could not be reached or refused
                the upgrade.
        """
        ws = websocket.WebSocket(
            enable_multithread=True, skip_utf8_validation=True, sslopt=sslopt
        )
        header = ["%s: %s" % item for item in headers.items()]
        try:
            ws.connect(
                url, header=header, timeout=handshake_timeout, suppress_origin=True
            )
        except _LOST as exc:
            _quietly_abort(ws)
            raise ConnectionLostError("cannot connect to %s: %s" % (url, exc)) from exc
        return cls(ws, generation, io_timeout)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def send_text(self, text: str) -> None:
        """Sends one text frame. Thread-safe; blocks while the socket is busy.

        Raises:
            ConnectionLostError: the connection is closed or broke mid-send.
        """
        self._send(text.encode("utf-8"), TEXT)

    def send_ping(self, payload: bytes = b"") -> None:
        """Sends a WebSocket ping. Thread-safe."""
        self._send(payload, PING)

    def _send(self, data: bytes, opcode: int) -> None:
        with self._send_lock:
            if self._closed.is_set():
                raise ConnectionLostError("connection is closed")
            try:
                self._ws.send(data, opcode)
            except _LOST as exc:
                self._closed.set()
                raise ConnectionLostError("send failed: %s" % exc) from exc

    def readable(self, timeout: float) -> bool:
        """Waits up to ``timeout`` for data. Only the reader calls this."""
        sock = self._ws.sock
        if sock is None or self._closed.is_set():
            raise ConnectionLostError("connection is closed")

        # TLS may already hold decrypted bytes that select() cannot see.
        pending = getattr(sock, "pending", None)
        if pending is not None and pending() > 0:
            return True
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except (OSError, ValueError) as exc:
            raise ConnectionLostError("connection is closed: %s" % exc) from exc
        return bool(ready)

    def recv_frame(self) -> Frame:
        """Reads one whole message or control frame. Only the reader calls this.

        Pings are answered by websocket-client before they are returned.

        Raises:
            ConnectionLostError: the socket broke, timed out mid-frame or the
                peer's bytes are not WebSocket.
        """
        try:
            opcode, frame = self._ws.recv_data_frame(True)
        except _LOST as exc:
            self._closed.set()
            raise ConnectionLostError(
                "receive failed: %s" % (exc or type(exc))
            ) from exc
        return opcode, frame.data if frame is not None else b""

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Sends a close frame if possible, then shuts the socket. Idempotent.

        Safe from any thread; wakes a reader blocked in :meth:`readable`.
        Never blocks longer than the I/O timeout.
        """
        acquired = self._send_lock.acquire(timeout=1.0)
        try:
            if acquired and not self._closed.is_set():
                self._ws.send_close(code, reason.encode("utf-8"))
        except _LOST:
            logger.debug("close frame not sent; the socket was already gone")
        finally:
            self._closed.set()
            if acquired:
                self._send_lock.release()
        self.abort()

    def abort(self) -> None:
        """Drops the TCP connection at once, without a close frame. Idempotent."""
        self._closed.set()
        _quietly_abort(self._ws)


def _quietly_abort(ws: websocket.WebSocket) -> None:
    sock = ws.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    try:
        ws.shutdown()
    except _LOST:
        pass
