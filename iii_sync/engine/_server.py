"""The WebSocket listener: ``websockets``' threaded server, routed by path.

``/`` is a worker session, ``/otel`` a telemetry sink, anything else gets a
404 with an empty body (engine-protocol §1.1). The server offers no
subprotocol and no compression, sends no keepalive pings (§3.6) and accepts
messages up to 64 MiB and single frames up to 16 MiB (§0); a larger one ends
the connection. The code sticks to the API that ``websockets`` 11 to 17
share (``websockets.sync.server.serve``).

Known shortcoming: only ``websockets`` releases that take a ``(message,
frame)`` size pair can cap a single frame (17 does, 11 does not); with an
older one a frame up to the 64 MiB message limit is accepted. Over a limit,
``websockets`` closes with code 1009 where the engine drops the socket.
"""

from __future__ import annotations

import http
import inspect
import logging
import socket
import threading
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlsplit

from websockets.protocol import Protocol, Side
from websockets.sync.server import serve

from .. import _protocol

logger = logging.getLogger(__name__)

# How long a closing handshake may take before the socket is dropped.
_CLOSE_TIMEOUT = 1.0
# How long stop() waits for each thread it joins.
_JOIN_TIMEOUT = 3.0

# tungstenite's default cap on one frame; a longer message must be fragmented.
MAX_FRAME_SIZE = 16 * 1024 * 1024

ConnectionHandler = Callable[[Any], None]


class WebSocketListener:
    """Accepts worker and telemetry connections on one port.

    Args:
        host: Interface to bind.
        port: TCP port; 0 picks a free one.
        on_worker: Runs one ``/`` connection on its own thread until it ends.
        on_telemetry: Runs one ``/otel`` connection likewise.
    """

    def __init__(
        self,
        host: str,
        port: int,
        on_worker: ConnectionHandler,
        on_telemetry: ConnectionHandler,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._port = port
        self._on_worker = on_worker
        self._on_telemetry = on_telemetry
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None
        # Guards _connections (live connection -> handler thread) and _counter.
        self._connections_lock = threading.Lock()
        self._connections: Dict[Any, threading.Thread] = {}
        self._counter = 0

    @property
    def port(self) -> int:
        """The bound port once started, else the requested one."""
        return self._port

    def start(self) -> None:
        """Binds and starts accepting; returns once the socket listens."""
        self._server = serve(
            self._handle,
            sock=self._bind(),
            process_request=self._route,
            compression=None,
            max_size=_size_limits(),
            close_timeout=_CLOSE_TIMEOUT,
            **_no_keepalive(),
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="iii-engine-listener",
            daemon=True,
        )
        self._thread.start()

    def _bind(self) -> Any:
        sock = _listening_socket(self._host, self._requested_port)
        self._port = int(sock.getsockname()[1])
        return sock

    def stop(self, abort: Callable[[Any], None]) -> None:
        """Stops accepting, ends every connection and joins the threads.

        Args:
            abort: Called for each open connection to drop it.
        """
        if self._server is None:
            return
        stopper = threading.Thread(
            target=self._server.shutdown, name="iii-engine-listener-stop", daemon=True
        )
        for connection in self._open_connections():
            abort(connection)
        stopper.start()
        stopper.join(_JOIN_TIMEOUT)
        for thread in self._connection_threads():
            if thread is not threading.current_thread():
                thread.join(_JOIN_TIMEOUT)
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT)

    def _route(self, connection: Any, request: Any) -> Any:
        path = urlsplit(request.path).path
        if path in ("/", _protocol.OTEL_PATH):
            return None
        logger.debug("refused WebSocket upgrade on %s", path)
        return connection.protocol.reject(http.HTTPStatus.NOT_FOUND, "")

    def _handle(self, connection: Any) -> None:
        path = urlsplit(connection.request.path).path
        with self._connections_lock:
            self._counter += 1
            number = self._counter
            self._connections[connection] = threading.current_thread()
        _name_threads(connection, number)
        try:
            if path == _protocol.OTEL_PATH:
                self._on_telemetry(connection)
            else:
                self._on_worker(connection)
        finally:
            with self._connections_lock:
                self._connections.pop(connection, None)

    def _open_connections(self) -> List[Any]:
        with self._connections_lock:
            return list(self._connections)

    def _connection_threads(self) -> List[threading.Thread]:
        with self._connections_lock:
            return list(self._connections.values())


def _name_threads(connection: Any, number: int) -> None:
    # The handler thread and the reader thread websockets starts per connection.
    threading.current_thread().name = f"iii-engine-conn-{number}"
    reader = getattr(connection, "recv_events_thread", None)
    if isinstance(reader, threading.Thread):
        reader.name = f"iii-engine-recv-{number}"


def _size_limits() -> Any:
    # A (message, frame) pair where websockets understands one: an older
    # release would keep the pair as its message limit and then fail on it.
    pair = (_protocol.DEFAULT_MAX_MESSAGE_SIZE, MAX_FRAME_SIZE)
    probe = Protocol(Side.SERVER, max_size=pair)
    if getattr(probe, "max_fragment_size", None) == MAX_FRAME_SIZE:
        return pair
    return _protocol.DEFAULT_MAX_MESSAGE_SIZE


def _no_keepalive() -> Dict[str, Any]:
    # websockets 15+ pings every 20 s by default; the engine never pings.
    parameters = inspect.signature(serve).parameters
    return {"ping_interval": None} if "ping_interval" in parameters else {}


def _listening_socket(host: str, port: int) -> socket.socket:
    # SO_REUSEADDR lets an engine restart on the port of one that just
    # stopped, while its old connections sit in TIME_WAIT; websockets only
    # sets it itself from version 13 on.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
