"""A TCP relay on 127.0.0.1 that can cut its clients off, for reconnect tests.

Workers connect to the relay, which opens one upstream connection to the
engine per client and copies bytes both ways. :meth:`TcpRelay.cut_clients`
closes the client sides only: each worker sees its connection drop, while
the engine keeps the old, now silent, connections open, as after a network
failure it has not noticed. That is the case ``reattach`` exists for.
"""

import socket
import threading
from typing import List, Tuple

# How long close() waits for each thread it joins.
_JOIN_TIMEOUT = 5.0
_CHUNK = 65536


class TcpRelay:
    """Relays ``127.0.0.1:<port>`` to ``127.0.0.1:<upstream_port>``.

    Args:
        upstream_port: The engine's worker port.

    Call :meth:`close` in a ``finally``; it closes every socket and joins
    every thread.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        # Not socket.create_server: that needs Python 3.8.
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        # Guards _pairs, _threads and _cut: the accept thread adds while
        # tests cut or close.
        self._sockets_lock = threading.Lock()
        self._pairs: List[Tuple[socket.socket, socket.socket]] = []
        self._threads: List[threading.Thread] = []
        self._cut: List[socket.socket] = []
        self._accepter = self._spawn(self._accept, "interop-relay-accept")

    @property
    def url(self) -> str:
        """The ``ws://`` URL workers should use."""
        return f"ws://127.0.0.1:{self.port}"

    def cut_clients(self) -> int:
        """Drops every client connection, leaving the engine's side open.

        Returns how many were cut. Later clients are relayed as before.
        """
        with self._sockets_lock:
            pairs, self._pairs = self._pairs, []
            self._cut.extend(upstream for _, upstream in pairs)
        for client, _ in pairs:
            _close(client)
        return len(pairs)

    def close(self) -> None:
        """Stops accepting, closes every socket and joins the threads."""
        _close(self._listener)
        with self._sockets_lock:
            pairs, self._pairs = self._pairs, []
            cut, self._cut = self._cut, []
            threads = list(self._threads)
        for client, upstream in pairs:
            _close(client)
            _close(upstream)
        for upstream in cut:
            _close(upstream)
        for thread in threads + [self._accepter]:
            thread.join(_JOIN_TIMEOUT)

    def _spawn(self, target: object, name: str, *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        return thread

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream, timeout=5.0)
            upstream.settimeout(None)
            with self._sockets_lock:
                self._pairs.append((client, upstream))
                self._threads.append(
                    self._spawn(self._pump, "interop-relay-up", client, upstream)
                )
                self._threads.append(
                    self._spawn(self._pump, "interop-relay-down", upstream, client)
                )

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        # Copies until the source ends, then passes the end on, unless the
        # pair was cut: a cut leaves the upstream side open on purpose.
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        with self._sockets_lock:
            was_cut = source in self._cut or target in self._cut
        if not was_cut:
            try:
                target.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
