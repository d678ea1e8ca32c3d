"""The ``http`` trigger provider of the embedded engine.

A threaded HTTP/1.1 server from the standard library turns each request into a
call of the bound function, the way the engine's REST worker does. Routing
lives in :mod:`._http_routes`, the request payload and the response encoding in
:mod:`._http_codec`; this module serves connections and runs each request:

* A CORS preflight is answered before routing; a path that exists only for
  other methods gets 405 with an ``Allow`` header, no route the 404 envelope.
* The optional ``condition_function_id`` is called first (same payload and
  namespace, no metadata); a result of exactly ``false`` gets the 422 envelope.
* The function is called with the binding's metadata, in the binding's
  namespace. A failed call becomes a 500 envelope with an ``error_id``; a
  request still running after ``timeout`` seconds, reading its body
  included, gets an empty 504.

Known shortcomings, on purpose:

* No data channels. The engine also passes ``request_body`` and ``response``
  channel references and streams the raw body into the first; here both are
  left out and a body that is not JSON is read and dropped. A function that
  returns null is expected to answer through the response channel; with no
  channel, the request waits out the timeout and ends in 504, as on the engine
  when nothing is written to that channel. One WARNING per such request says so.
* ``middleware_function_ids`` and CORS settings are ignored; CORS is always
  permissive, approximating the engine's default.
* Bodies are held in memory, so one over ``MAX_BODY_SIZE`` (64 MiB) is
  refused with an empty 413 before it is read; the engine sets no limit.
"""

import http.server
import itertools
import logging
import socket
import socketserver
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._http_codec import (
    NOT_FOUND,
    PREFLIGHT_HEADERS,
    SKIPPED,
    TIMED_OUT,
    BodyTooLargeError,
    Reply,
    encode_return,
    envelope,
    read_body,
    request_payload,
    send_reply,
    split_target,
)
from ._http_routes import Route, RouteTable, route_key
from ._providers import (
    Binding,
    CallFailed,
    FunctionCaller,
    InProcessProvider,
)

_log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3111

# The engine's default_timeout (30 000 ms): a request still running gets 504.
DEFAULT_TIMEOUT = 30.0

# The engine's concurrency_request_limit; further requests queue for a slot.
CONCURRENCY_LIMIT = 1024

# How long stop() waits for open connections to finish.
STOP_TIMEOUT = 2.0

# The caller measures the same timeout from a moment later than ours.
_CLOCK_SLACK = 0.005

# A socket timeout of 0 would mean non-blocking; a spent deadline reads briefly.
_MIN_READ_TIMEOUT = 0.001


class _AbortError(Exception):
    """Ends a request early with a ready reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    """Hands every request, whatever its method, to the server's callback."""

    protocol_version = "HTTP/1.1"

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD>; the router decides about methods.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        server.on_request(self)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("http %s " + format, self.address_string(), *args)


class _Server(socketserver.TCPServer):
    """A TCP server that serves each connection on its own named thread."""

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: Tuple[str, int],
        on_request: Callable[[http.server.BaseHTTPRequestHandler], None],
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.on_request = on_request
        self._numbers = itertools.count(1)

        # Guards _connections (each connection thread and its socket).
        self._connections_lock = threading.Lock()
        self._connections: Dict[threading.Thread, Any] = {}
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="iii-http-conn-%d" % next(self._numbers),
            daemon=True,
        )
        with self._connections_lock:
            self._connections[thread] = request
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one broken connection must not leak
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._connections_lock:
                self._connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("http: connection from %s failed", client_address, exc_info=True)

    def close_connections(self, timeout: float) -> List[str]:
        """Closes every open connection; returns the threads still running."""
        with self._connections_lock:
            open_now = list(self._connections.items())
        for _, sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for thread, _ in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread.name for thread, _ in open_now if thread.is_alive()]


class HttpProvider(InProcessProvider):
    """Serves bindings of trigger type ``http`` on a local HTTP server.

    Args:
        caller: The engine's in-process call path.
        host: The address to listen on.
        port: The port; 0 picks a free one (see :attr:`port` after ``start``).
        timeout: Seconds before a request is answered with 504.
    """

    trigger_type = "http"

    def __init__(
        self,
        caller: FunctionCaller,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._caller = caller
        self._host = host
        self._port = port
        self._timeout = timeout
        self._routes = RouteTable()
        self._slots = threading.BoundedSemaphore(CONCURRENCY_LIMIT)
        self._stopping = threading.Event()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        """The listening port (the bound one once started)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._port

    @property
    def url(self) -> str:
        """The base URL, such as ``http://127.0.0.1:3111``."""
        host = "[%s]" % self._host if ":" in self._host else self._host
        return "http://%s:%d" % (host, self.port)

    def register(self, binding: Binding) -> None:
        """Adds or replaces the binding's route.

        Callable from any thread; does not block.

        Raises:
            TriggerRejected: no ``api_path``, or a route of the same shape with
                other parameter names exists.
        """
        route = Route(binding)
        self._routes.add(route)
        _log.debug(
            "http route %s -> %s (%s)", route.key, binding.function_id, binding.id
        )

    def unregister(self, binding: Binding) -> None:
        """Removes the binding's route unless another binding has replaced it.

        Callable from any thread; does not block. Unknown ids are ignored.
        """
        config = binding.config if isinstance(binding.config, dict) else {}
        api_path = config.get("api_path")
        method = config.get("http_method")
        key = route_key(
            method if isinstance(method, str) else "GET",
            api_path if isinstance(api_path, str) else "",
        )
        if self._routes.remove(key, binding.id):
            _log.debug("http route %s removed (%s)", key, binding.id)

    def start(self) -> None:
        """Binds and starts serving; returns once connections are accepted.

        Call once, from any thread.

        Raises:
            OSError: the address cannot be bound.
        """
        self._server = _Server((self._host, self._port), self._serve)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="iii-http-server",
            daemon=True,
        )
        self._thread.start()
        _log.info("http triggers listening on %s", self.url)

    def stop(self) -> None:
        """Stops accepting, closes open connections and joins the threads.

        Call once, from any thread other than a request thread. Blocks for at
        most about ``STOP_TIMEOUT`` seconds; a function call still running is
        left to finish on its own.
        """
        self._stopping.set()
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        busy = server.close_connections(STOP_TIMEOUT)
        thread.join(STOP_TIMEOUT)
        if busy:
            _log.warning("http triggers stopped; still running: %s", ", ".join(busy))

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        # Runs on a connection thread. Waiting for a slot does not count
        # towards the timeout, as the engine's limit sits outside its timer.
        with self._slots:
            deadline = time.monotonic() + self._timeout
            try:
                reply = self._answer(handler, deadline)
            except _AbortError as abort:
                reply = abort.reply
        send_reply(handler, reply)

    def _answer(
        self, handler: http.server.BaseHTTPRequestHandler, deadline: float
    ) -> Reply:
        raw = self._read_body(handler, deadline)
        if (
            handler.command == "OPTIONS"
            and "access-control-request-method" in handler.headers
        ):
            return Reply(200, list(PREFLIGHT_HEADERS), cors=False)

        path, query = split_target(handler.path)
        route, allow = self._routes.lookup(handler.command, path)
        if route is None and allow:
            return Reply(405, [("allow", allow)])
        if route is None:
            _log.debug("http %s %s: no route", handler.command, path)
            return envelope(404, NOT_FOUND)
        payload = request_payload(handler, route, path, query, raw)
        return self._run(route, payload, deadline)

    def _read_body(
        self, handler: http.server.BaseHTTPRequestHandler, deadline: float
    ) -> bytes:
        # The body counts towards the request timeout, as under the engine's
        # timeout layer. A refused or half-read body ends the connection.
        sock = handler.connection
        previous = sock.gettimeout()
        sock.settimeout(max(deadline - time.monotonic(), _MIN_READ_TIMEOUT))
        try:
            return read_body(handler)
        except ValueError:
            raise _AbortError(Reply(400, [], cors=False, close=True)) from None
        except BodyTooLargeError as exc:
            _log.warning(
                "http %s %s: body refused: %s", handler.command, handler.path, exc
            )
            raise _AbortError(Reply(413, [], cors=False, close=True)) from None
        except socket.timeout:
            raise _AbortError(Reply(504, [], cors=False, close=True)) from None
        finally:
            sock.settimeout(previous)

    def _run(self, route: Route, payload: Dict[str, Any], deadline: float) -> Reply:
        binding = route.binding
        if route.condition is not None:
            verdict = self._call(route.condition, payload, binding, None, deadline)
            if verdict is False:
                return envelope(422, SKIPPED)
        result = self._call(
            binding.function_id, payload, binding, binding.metadata, deadline
        )
        if result is not None:
            return encode_return(result)

        # The engine would now read the response channel until the timeout.
        _log.warning(
            "http %s %s: %s returned null, which means 'the answer follows on the"
            " response channel'; this engine has no data channels, so the request"
            " times out with 504 after %.0f s. Return {status_code, headers, body}.",
            payload["method"], route.api_path, binding.function_id, self._timeout,
        )  # fmt: skip
        self._stopping.wait(max(0.0, deadline - time.monotonic()))
        return TIMED_OUT

    def _call(
        self,
        function_id: str,
        payload: Dict[str, Any],
        binding: Binding,
        metadata: Any,
        deadline: float,
    ) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _AbortError(TIMED_OUT)
        try:
            result = self._caller.call(
                function_id, payload, namespace=binding.namespace, metadata=metadata,
                timeout=remaining,
            )  # fmt: skip
        except CallFailed as exc:
            if time.monotonic() >= deadline - _CLOCK_SLACK:
                raise _AbortError(TIMED_OUT) from None
            raise _AbortError(self._failure(function_id, binding, exc)) from None
        except Exception:  # noqa: BLE001 - a broken call path still gets an answer
            _log.exception("http trigger %s: calling %s broke", binding.id, function_id)
            failure = CallFailed("INTERNAL_ERROR", "internal server error")
            raise _AbortError(self._failure(function_id, binding, failure)) from None
        if time.monotonic() >= deadline:
            raise _AbortError(TIMED_OUT)
        return result

    def _failure(self, function_id: str, binding: Binding, exc: CallFailed) -> Reply:
        error_id = "%x" % (time.time_ns() & 0xFFFFFFFFFFFF)
        _log.error(
            "http trigger %s: %s::%s failed with %s: %s (error_id %s)",
            binding.id, binding.namespace, function_id, exc.code, exc.message, error_id,
        )  # fmt: skip
        error = {"code": exc.code, "message": exc.message, "error_id": error_id}
        return envelope(500, {"error": error})
