"""One WebSocket connection to the engine, on websocket-client.

A :class:`Transport` is used by exactly one reader (the worker's connection
thread) and any number of senders. Sends are serialised by a lock that guards
the socket's write side; reads wait in a selector with a short tick so that
the reader can also keep time for pings. A transport is never reused: every
reconnect makes a new one.
"""

import logging
import selectors
import socket
import threading
import time
from typing import Any, Dict, Optional, Tuple, Union

import websocket

from ._errors import ConnectionLostError

logger = logging.getLogger(__name__)

TEXT = websocket.ABNF.OPCODE_TEXT
BINARY = websocket.ABNF.OPCODE_BINARY
CLOSE = websocket.ABNF.OPCODE_CLOSE
PING = websocket.ABNF.OPCODE_PING
PONG = websocket.ABNF.OPCODE_PONG
CONTINUATION = websocket.ABNF.OPCODE_CONT

NORMAL_CLOSURE = 1000

# The engine's WebSocket layer refuses a single frame over 16 MiB (its
# messages may reach 64 MiB); larger messages go out in 1 MiB fragments.
MAX_FRAME_SIZE = 16 * 1024 * 1024
FRAGMENT_SIZE = 1024 * 1024

Frame = Tuple[int, bytes]

# Errors that mean the socket is gone, whatever layer noticed it.
_LOST = (websocket.WebSocketException, OSError, ValueError, AttributeError)


class Dialer:
    """One connection attempt that another thread may abort.

    Threading: :meth:`connect` blocks the calling thread up to the handshake
    timeout; :meth:`abort` may be called from any thread to end it early.
    """

    def __init__(self, sslopt: Optional[Dict[str, Any]] = None) -> None:
        self._ws = websocket.WebSocket(
            enable_multithread=True, skip_utf8_validation=True, sslopt=sslopt
        )
        self._aborted = threading.Event()

    def connect(
        self,
        url: str,
        headers: Dict[str, str],
        handshake_timeout: float,
        io_timeout: float,
        generation: int,
    ) -> "Transport":
        """Connects and completes the handshake.

        Raises:
            ConnectionLostError: the engine could not be reached, refused the
                upgrade, or the attempt was aborted.
        """
        header = ["%s: %s" % item for item in headers.items()]
        try:
            self._ws.connect(
                url, header=header, timeout=handshake_timeout, suppress_origin=True
            )
        except _LOST as exc:
            _quietly_abort(self._ws)
            raise ConnectionLostError("cannot connect to %s: %s" % (url, exc)) from exc
        if self._aborted.is_set():
            _quietly_abort(self._ws)
            raise ConnectionLostError("connection attempt to %s aborted" % url)
        return Transport(self._ws, generation, io_timeout)

    def abort(self) -> None:
        """Ends a handshake in progress; the blocked :meth:`connect` raises."""
        self._aborted.set()
        _shut(self._ws)


class Transport:
    """A connected WebSocket. Made by :meth:`Dialer.connect`.

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

        # A selector, not select(): it has no limit on descriptor numbers,
        # and gevent's patch makes it cooperative.
        self._selector = selectors.DefaultSelector()
        if ws.sock is None:
            raise ConnectionLostError("connection closed during the handshake")
        self._selector.register(ws.sock, selectors.EVENT_READ)

        # Guards the socket's write side: one message at a time, whole.
        self._send_lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def send_text(self, text: Union[str, bytes]) -> None:
        """Sends one text message. Thread-safe; blocks while the socket is busy.

        Messages over 16 MiB go out as fragments of 1 MiB.

        Raises:
            ConnectionLostError: the connection is closed or broke mid-send.
        """
        data = text.encode("utf-8") if isinstance(text, str) else text
        self._send(data, TEXT)

    def send_ping(self, payload: bytes = b"") -> None:
        """Sends a WebSocket ping. Thread-safe."""
        self._send(payload, PING)

    def _send(self, data: bytes, opcode: int) -> None:
        with self._send_lock:
            if self._closed.is_set():
                raise ConnectionLostError("connection is closed")
            try:
                if len(data) > MAX_FRAME_SIZE:
                    self._send_fragments(data, opcode)
                else:
                    self._ws.send(data, opcode)
            except _LOST as exc:
                self._closed.set()
                raise ConnectionLostError("send failed: %s" % exc) from exc

    def _send_fragments(self, data: bytes, opcode: int) -> None:
        # Control frames (the reader's pongs) may come between fragments.
        view = memoryview(data)
        for start in range(0, len(data), FRAGMENT_SIZE):
            chunk = bytes(view[start : start + FRAGMENT_SIZE])
            fin = start + FRAGMENT_SIZE >= len(data)
            frame = websocket.ABNF.create_frame(
                chunk, opcode if start == 0 else CONTINUATION, 1 if fin else 0
            )
            self._ws.send_frame(frame)

    def readable(self, timeout: float) -> bool:
        """Waits up to ``timeout`` for data. Only the reader calls this."""
        sock = self._ws.sock
        if sock is None or self._closed.is_set():
            raise ConnectionLostError("connection is closed")

        # TLS may already hold decrypted bytes that the selector cannot see.
        pending = getattr(sock, "pending", None)
        if pending is not None and pending() > 0:
            return True
        try:
            return bool(self._selector.select(timeout))
        except (OSError, ValueError) as exc:
            raise ConnectionLostError("connection is closed: %s" % exc) from exc

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

    def close(
        self, code: int = NORMAL_CLOSURE, reason: str = "", timeout: float = 1.0
    ) -> None:
        """Sends a close frame if possible, then shuts the socket. Idempotent.

        Safe from any thread; wakes a reader blocked in :meth:`readable`.
        Returns within about ``timeout`` seconds, even when the peer has
        stopped reading.
        """
        deadline = time.monotonic() + timeout
        acquired = self._send_lock.acquire(timeout=max(0.0, timeout))
        try:
            if acquired and not self._closed.is_set():
                self._send_close(code, reason, max(0.01, deadline - time.monotonic()))
        finally:
            self._closed.set()
            if acquired:
                self._send_lock.release()
        self.abort()

    def _send_close(self, code: int, reason: str, timeout: float) -> None:
        sock = self._ws.sock
        try:
            if sock is not None:
                sock.settimeout(timeout)
            self._ws.send_close(code, reason.encode("utf-8"))
        except _LOST:
            logger.debug("close frame not sent; the socket was already gone")

    def abort(self) -> None:
        """Drops the TCP connection at once, without a close frame. Idempotent.

        Safe from any thread: it only shuts the socket down, which wakes the
        reader; the descriptors are released by :meth:`release`.
        """
        self._closed.set()
        _shut(self._ws)

    def release(self) -> None:
        """Aborts, then frees the socket and selector. Only the reader calls
        this: closing a descriptor another thread waits on loses its wake-up."""
        self.abort()
        _quietly_abort(self._ws)
        try:
            self._selector.close()
        except (OSError, ValueError, RuntimeError):
            pass


def _shut(ws: websocket.WebSocket) -> None:
    sock = ws.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _quietly_abort(ws: websocket.WebSocket) -> None:
    _shut(ws)
    try:
        ws.shutdown()
    except _LOST:
        pass
