"""A scriptable stand-in engine for faults a real engine cannot produce.

Plain sockets and a small RFC 6455 codec, so that a test controls every byte:
close codes, invalid UTF-8, silence, resets. It answers the worker's
``engine::workers::register`` call like the real engine unless told not to.
Tests that need real routing use ``iii_sync.engine.LocalEngine`` instead.
"""

import base64
import hashlib
import json
import queue
import socket
import struct
import threading
import uuid
from typing import Any, Callable, Dict, List, Optional

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    size = len(data)
    key = (mask * (size // 4 + 1))[:size]
    value = int.from_bytes(data, "big") ^ int.from_bytes(key, "big")
    return value.to_bytes(size, "big")


class StubConnection:
    """One accepted worker socket, read by its own thread."""

    def __init__(self, stub: "StubEngine", sock: socket.socket) -> None:
        self.stub = stub
        self.sock = sock
        self.frames: queue.Queue[Dict[str, Any]] = queue.Queue()
        self.received: List[Dict[str, Any]] = []
        self.pings = 0
        self.closed = threading.Event()
        self.close_code: Optional[int] = None
        self.worker_id = str(uuid.uuid4())
        self.token = str(uuid.uuid4())
        self.answer_pings = True
        self.max_frame_size = 0
        self._send_lock = threading.Lock()

    def results(self) -> List[Dict[str, Any]]:
        return [f for f in self.received if f.get("type") == "invocationresult"]

    def invoke(
        self, function_id: str, data: Any = None, invocation_id: Optional[str] = None
    ) -> str:
        """Sends an invocation like the engine does; returns its id."""
        invocation_id = invocation_id or str(uuid.uuid4())
        self.send(
            {
                "type": "invokefunction",
                "invocation_id": invocation_id,
                "function_id": function_id,
                "data": data,
            }
        )
        return invocation_id

    def result_for(self, invocation_id: str, timeout: float = 5.0) -> Dict[str, Any]:
        """Waits for the worker's invocationresult with that id."""
        while True:
            frame = self.next_frame("invocationresult", timeout)
            if frame["invocation_id"] == invocation_id:
                return frame

    # Sending ---------------------------------------------------------------

    def send_raw(self, payload: bytes, opcode: int = TEXT) -> None:
        header = bytes([0x80 | opcode])
        size = len(payload)
        if size < 126:
            header += bytes([size])
        elif size < 1 << 16:
            header += bytes([126]) + struct.pack(">H", size)
        else:
            header += bytes([127]) + struct.pack(">Q", size)
        with self._send_lock:
            try:
                self.sock.sendall(header + payload)
            except OSError:
                pass

    def send(self, frame: Dict[str, Any]) -> None:
        self.send_raw(json.dumps(frame).encode("utf-8"))

    def close(self, code: Optional[int] = 1000) -> None:
        payload = b"" if code is None else struct.pack(">H", code)
        self.send_raw(payload, CLOSE)

    def drop(self) -> None:
        """Resets the TCP connection without a close frame.

        SO_LINGER 0 turns the close into a reset; the socket is shut for
        reading first to wake the reader thread, which then closes it.
        """
        try:
            self.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        self.closed.wait(5)

    # Receiving -------------------------------------------------------------

    def next_frame(
        self, frame_type: Optional[str] = None, timeout: float = 5.0
    ) -> Dict[str, Any]:
        """Returns the next received frame (of ``frame_type``, if given)."""
        while True:
            frame = self.frames.get(timeout=timeout)
            if frame_type is None or frame.get("type") == frame_type:
                return frame

    def _read_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("peer closed")
            data += chunk
        return data

    def _read_frame(self) -> Any:
        first, second = self._read_exact(2)
        opcode, size = first & 0x0F, second & 0x7F
        if size == 126:
            size = struct.unpack(">H", self._read_exact(2))[0]
        elif size == 127:
            size = struct.unpack(">Q", self._read_exact(8))[0]
        self.max_frame_size = max(self.max_frame_size, size)
        mask = self._read_exact(4) if second & 0x80 else b"\0\0\0\0"
        return bool(first & 0x80), opcode, _unmask(self._read_exact(size), mask)

    def _read_message(self) -> Any:
        # Reassembles fragments; control frames may come in between.
        fin, opcode, data = self._read_frame()
        while not fin:
            fin, more_opcode, more = self._read_frame()
            if more_opcode == 0:
                data += more
            else:
                self._control(more_opcode, more)
        return opcode, data

    def serve(self) -> None:
        try:
            while True:
                opcode, data = self._read_message()
                if opcode == PING:
                    self.pings += 1
                    if self.answer_pings:
                        self.send_raw(data, PONG)
                elif opcode == CLOSE:
                    self.close_code = (
                        struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None
                    )
                    self.send_raw(data[:2], CLOSE)
                    break
                elif opcode == TEXT:
                    self._on_text(json.loads(data.decode("utf-8")))
        except (OSError, ConnectionError, ValueError):
            pass
        finally:
            self.closed.set()
            try:
                self.sock.close()
            except OSError:
                pass

    def _control(self, opcode: int, data: bytes) -> None:
        if opcode == PING:
            self.pings += 1
            if self.answer_pings:
                self.send_raw(data, PONG)

    def _on_text(self, frame: Dict[str, Any]) -> None:
        self.received.append(frame)
        announce = frame.get("function_id") == "engine::workers::register"
        if announce and frame.get("invocation_id") and self.stub.answer_announce:
            self.send(
                {
                    "type": "invocationresult",
                    "invocation_id": frame["invocation_id"],
                    "function_id": frame["function_id"],
                    "result": {"success": True},
                }
            )
        self.frames.put(frame)
        if self.stub.on_frame is not None:
            self.stub.on_frame(self, frame)


class StubEngine:
    """Accepts worker connections on 127.0.0.1 and records what they send.

    Attributes:
        connections: Every connection accepted so far, oldest first.
        answer_announce: Whether to answer ``engine::workers::register``.
        on_frame: Optional ``callback(connection, frame)`` for scripted replies.
    """

    def __init__(self, port: int = 0, ssl_context: Any = None) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._ssl_context = ssl_context
        scheme = "wss" if ssl_context is not None else "ws"
        self.url = "%s://127.0.0.1:%d" % (scheme, self.port)
        self.connections: List[StubConnection] = []
        self.accepted: queue.Queue[StubConnection] = queue.Queue()
        self.answer_announce = True
        self.answer_pings = True
        self.refuse_handshakes = 0
        self.on_frame: Optional[Callable[[StubConnection, Dict[str, Any]], None]] = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._accept_loop, name="stub-engine-accept", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> "StubEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def next_connection(self, timeout: float = 5.0) -> StubConnection:
        return self.accepted.get(timeout=timeout)

    def open_connections(self) -> List[StubConnection]:
        return [c for c in self.connections if not c.closed.is_set()]

    def stop(self) -> None:
        self._stopped.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._listener.close()
        for connection in self.connections:
            connection.drop()
        self._thread.join(5)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(
                target=self._handshake,
                args=(sock,),
                name="stub-engine-conn",
                daemon=True,
            ).start()

    def _handshake(self, sock: socket.socket) -> None:
        if self._ssl_context is not None:
            try:
                sock = self._ssl_context.wrap_socket(sock, server_side=True)
            except OSError:
                sock.close()
                return
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                return
            request += chunk
        if self.refuse_handshakes > 0:
            self.refuse_handshakes -= 1
            sock.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
            )
            sock.close()
            return

        headers = {}
        for line in request.decode("latin-1").split("\r\n")[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(
            hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest()
        ).decode()
        sock.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept
            ).encode()
        )

        connection = StubConnection(self, sock)
        connection.answer_pings = self.answer_pings
        connection.headers = headers  # type: ignore[attr-defined]
        self.connections.append(connection)
        connection.send(
            {
                "type": "workerregistered",
                "worker_id": connection.worker_id,
                "reattach_token": connection.token,
            }
        )
        self.accepted.put(connection)
        connection.serve()
