"""The ``http`` trigger provider of the embedded engine.

A threaded HTTP/1.1 server from the standard library turns each request into a
call of the bound function, the way the engine's REST worker does:

* Routes come from binding configs: ``api_path`` (required; ``:name``
  segments are path parameters, the leading ``/`` is optional), ``http_method``
  (default ``GET``, upper-cased) and ``condition_function_id``. The route key
  is ``METHOD:path-without-leading-slash``; the same key again replaces the
  route, and the same shape with other parameter names is refused. Matching
  prefers literal segments to parameters, compares the raw (still
  percent-encoded) path, answers 405 when the path exists for other methods,
  and lets a ``HEAD`` request reach a ``GET`` route, where it finds no ``HEAD``
  binding and gets the 404 envelope.
* The function receives ``query_params``, ``path_params``, ``headers``,
  ``path`` (the registered pattern), ``method``, ``body`` and ``trigger``, with
  the binding's metadata, in the binding's namespace.
* A non-null return is read as ``{status_code, headers, body}``; errors become
  the engine's JSON envelopes (500 with an ``error_id``, 404, 422); a request
  still running after ``timeout`` seconds gets an empty 504.

Known shortcomings, on purpose:

* No data channels. The engine also passes ``request_body`` and ``response``
  channel references and streams the raw body into the first; here both are
  left out and a body that is not JSON is read and dropped. A function that
  returns null is expected to answer through the response channel; with no
  channel, the request waits out the timeout and ends in 504, as on the engine
  when nothing is written to that channel. One WARNING per such request says so.
* ``middleware_function_ids`` and CORS settings are ignored; CORS is always
  permissive, approximating the engine's default.
"""

import http.server
import itertools
import json
import logging
import re
import socket
import socketserver
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

from ._providers import (
    Binding,
    CallFailed,
    FunctionCaller,
    InProcessProvider,
    TriggerRejected,
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

# Methods the engine mounts, in the order an Allow header lists them.
MOUNTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_VISIBLE_ASCII = re.compile(r"[\t\x20-\x7e]*\Z")

# Response framing is this server's job, whatever a function returns.
_FRAMING_HEADERS = frozenset(("content-length", "transfer-encoding", "connection"))

_CORS_HEADERS = [
    ("access-control-allow-origin", "*"),
    ("access-control-expose-headers", "*"),
    ("vary", "origin, access-control-request-method, access-control-request-headers"),
]
_PREFLIGHT_HEADERS = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "*"),
    ("access-control-allow-headers", "*"),
    ("vary", "origin, access-control-request-method, access-control-request-headers"),
]

_NOT_FOUND = {"error": {"code": "NOT_FOUND", "message": "Not Found"}}
_SKIPPED = {
    "error": {"code": "CONDITION_NOT_MET", "message": "Request condition not met"},
    "skipped": True,
}


class _Reply:
    """A response ready to write: status, header pairs and body bytes.

    ``cors`` is False for answers the engine gives outside its CORS layer
    (timeouts, broken framing, preflights).
    """

    __slots__ = ("body", "cors", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: List[Tuple[str, str]],
        body: bytes = b"",
        cors: bool = True,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.cors = cors


_TIMED_OUT = _Reply(504, [], cors=False)


class _AbortError(Exception):
    """Ends a request early with a ready reply."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def route_key(method: str, api_path: str) -> str:
    """The engine's route key, ``METHOD:path`` without the leading slashes."""
    path = api_path if api_path == "/" else api_path.lstrip("/")
    return "%s:%s" % (method.upper(), path)


def _is_param(segment: str) -> bool:
    return segment.startswith(":") or (
        segment.startswith("{") and segment.endswith("}")
    )


class _Route:
    """One binding's route: its key, mount pattern and structural shape."""

    __slots__ = (
        "api_path",
        "binding",
        "condition",
        "key",
        "method",
        "pattern",
        "shape",
    )

    def __init__(self, binding: Binding) -> None:
        config = binding.config if isinstance(binding.config, dict) else {}
        api_path = config.get("api_path")
        if not isinstance(api_path, str):
            raise TriggerRejected("api_path is required for http triggers")
        method = config.get("http_method")
        condition = config.get("condition_function_id")

        self.binding = binding
        self.api_path = api_path
        self.method = (method if isinstance(method, str) else "GET").upper()
        self.condition = condition if isinstance(condition, str) else None
        self.key = route_key(self.method, api_path)
        mounted = api_path if api_path.startswith("/") else "/" + api_path
        self.pattern = tuple(mounted.split("/"))
        shape = ("{}" if _is_param(s) else s for s in self.pattern)
        self.shape = "%s:%s" % (self.method, "/".join(shape))

    def score(self, segments: List[str]) -> Optional[Tuple[int, ...]]:
        """How well a request path fits: literal matches rank above parameters."""
        if len(segments) != len(self.pattern):
            return None
        marks = []
        for wanted, given in zip(self.pattern, segments):
            if _is_param(wanted) and given:
                marks.append(0)
            elif wanted == given and not _is_param(wanted):
                marks.append(1)
            else:
                return None
        return tuple(marks)

    def path_params(self, path: str) -> Dict[str, str]:
        """``:name`` values from the raw request path, as the engine reads them."""
        wanted = [s for s in self.api_path.split("/") if s]
        given = [s for s in path.split("/") if s]
        if len(wanted) != len(given):
            return {}
        return {w[1:]: g for w, g in zip(wanted, given) if w.startswith(":")}


class _RouteTable:
    """The live routes, keyed by route key."""

    def __init__(self) -> None:
        # Guards _routes.
        self._routes_lock = threading.Lock()
        self._routes: Dict[str, _Route] = {}

    def add(self, route: _Route) -> None:
        with self._routes_lock:
            clash = [
                other
                for key, other in self._routes.items()
                if key != route.key and other.shape == route.shape
            ]
            if not clash:
                self._routes[route.key] = route
                return
        raise TriggerRejected(
            "Route '%s %s' conflicts with already-registered route '%s %s': routes"
            " with identical structure but different path-parameter names are not"
            " supported"
            % (route.method, route.api_path, route.method, clash[0].api_path)
        )

    def remove(self, key: str, binding_id: str) -> bool:
        """Removes the route if this binding still owns it."""
        with self._routes_lock:
            route = self._routes.get(key)
            if route is None or route.binding.id != binding_id:
                return False
            del self._routes[key]
            return True

    def lookup(self, method: str, path: str) -> Tuple[Optional[_Route], str]:
        """The route for a request, or None and the Allow value (empty for 404)."""
        with self._routes_lock:
            mounted = [r for r in self._routes.values() if r.method in MOUNTED_METHODS]
        segments = path.split("/")
        scored = [(r.score(segments), r) for r in mounted]
        fitting = [(score, r) for score, r in scored if score is not None]
        if not fitting:
            return None, ""

        # Like axum: pick the best path first, then look at the methods there.
        best = max(fitting, key=lambda pair: pair[0])[1].pattern
        methods = {r.method: r for r in mounted if r.pattern == best}
        if method in methods:
            return methods[method], ""
        if method == "HEAD" and "GET" in methods:
            return None, ""
        if "GET" in methods:
            methods["HEAD"] = methods["GET"]
        return None, ",".join(m for m in MOUNTED_METHODS if m in methods)


def _split_target(target: str) -> Tuple[str, str]:
    if target.startswith("/") or target == "*":
        path, _, query = target.partition("?")
        return path, query
    parts = urlsplit(target)
    return parts.path or "/", parts.query


def _header_text(value: str) -> str:
    # The engine passes "" for a value that is not visible ASCII.
    value = value.strip(" \t")
    return value if _VISIBLE_ASCII.match(value) else ""


def _read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    """Reads the whole request body; raises ValueError for broken framing."""
    if "chunked" in handler.headers.get("transfer-encoding", "").lower():
        return _read_chunked(handler.rfile)
    length = handler.headers.get("content-length")
    if length is None:
        return b""
    if not length.strip().isdigit():
        raise ValueError("bad content-length %r" % length)
    return handler.rfile.read(int(length))


def _read_chunked(stream: Any) -> bytes:
    chunks = []
    while True:
        line = stream.readline(65537)
        size = int(line.split(b";", 1)[0].strip(), 16)  # ValueError if malformed
        if size == 0:
            break
        chunks.append(stream.read(size))
        stream.readline()

    # Trailers, if any, end with an empty line.
    while stream.readline(65537) not in (b"\r\n", b"\n", b""):
        pass
    return b"".join(chunks)


def _refuse_constant(name: str) -> Any:
    raise ValueError("%s is not JSON" % name)


def _json_body(content_type: str, raw: bytes) -> Any:
    # Case-sensitive on purpose, as in the engine.
    if "application/json" not in content_type:
        return None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None


def _json_bytes(value: Any) -> bytes:
    # serde_json without preserve_order writes object keys sorted.
    try:
        text = json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
            allow_nan=False,
        )  # fmt: skip
    except (TypeError, ValueError):
        return b"null"
    return text.encode("utf-8", "replace")


def _envelope(status: int, document: Any) -> _Reply:
    return _Reply(status, [("content-type", "application/json")], _json_bytes(document))


def _status_code(value: Any) -> int:
    # An unsigned JSON integer, narrowed to 16 bits as the engine does.
    if isinstance(value, bool) or not isinstance(value, int):
        return 200
    if not 0 <= value < 1 << 64:
        return 200
    narrowed = value & 0xFFFF
    return narrowed if 100 <= narrowed <= 999 else 200


def _header_pairs(value: Any) -> List[Tuple[str, str]]:
    if isinstance(value, dict):
        return [(k, v) for k, v in value.items() if isinstance(v, str)]
    if not isinstance(value, list):
        return []
    pairs = []
    for line in value:
        name, colon, rest = (
            line.partition(":") if isinstance(line, str) else ("", "", "")
        )
        if colon and name.strip():
            pairs.append((name.strip(), rest.strip()))
    return pairs


def _sendable(pairs: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    sendable = []
    for name, value in pairs:
        if not _TOKEN.match(name) or _BAD_HEADER_VALUE.search(value):
            _log.warning("http: skipping invalid response header %r", name)
        elif name.lower() not in _FRAMING_HEADERS:
            sendable.append((name.lower(), value))
    return sendable


def encode_return(result: Any) -> _Reply:
    """Builds the response for a function's non-null return value."""
    fields = result if isinstance(result, dict) else {}
    status = _status_code(fields.get("status_code"))
    pairs = _header_pairs(fields.get("headers"))
    body = fields.get("body", {})
    headers = _sendable(pairs)
    user_type = next((v for n, v in pairs if n.lower() == "content-type"), None)

    # Without a content type of the function's choosing the body is JSON.
    if user_type is None:
        headers.append(("content-type", "application/json"))
        return _Reply(status, headers, _json_bytes(body))
    if isinstance(body, str):
        return _Reply(status, headers, body.encode("utf-8", "replace"))
    return _Reply(status, headers, b"" if body is None else _json_bytes(body))


def _with_cors(headers: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    # The CORS layer's headers replace any of the same name.
    names = {name for name, _ in _CORS_HEADERS}
    return [(n, v) for n, v in headers if n not in names] + _CORS_HEADERS


def _send(handler: http.server.BaseHTTPRequestHandler, reply: _Reply) -> None:
    bodiless = reply.status < 200 or reply.status in (204, 304)
    headers = _with_cors(reply.headers) if reply.cors else reply.headers

    # Like hyper: a date header and no server header.
    handler.log_request(reply.status)
    handler.send_response_only(reply.status)
    handler.send_header("date", handler.date_time_string())
    for name, value in headers:
        # http.server writes latin-1; this keeps UTF-8 values byte for byte.
        handler.send_header(name, value.encode("utf-8").decode("latin-1"))
    if not bodiless:
        handler.send_header("content-length", str(len(reply.body)))
    handler.end_headers()
    if not bodiless and handler.command != "HEAD":
        handler.wfile.write(reply.body)


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
        self._routes = _RouteTable()
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
        route = _Route(binding)
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
        _send(handler, reply)

    def _answer(
        self, handler: http.server.BaseHTTPRequestHandler, deadline: float
    ) -> _Reply:
        try:
            raw = _read_body(handler)
        except ValueError:
            handler.close_connection = True
            return _Reply(400, [], cors=False)
        if (
            handler.command == "OPTIONS"
            and "access-control-request-method" in handler.headers
        ):
            return _Reply(200, list(_PREFLIGHT_HEADERS), cors=False)

        path, query = _split_target(handler.path)
        route, allow = self._routes.lookup(handler.command, path)
        if route is None and allow:
            return _Reply(405, [("allow", allow)])
        if route is None:
            _log.debug("http %s %s: no route", handler.command, path)
            return _envelope(404, _NOT_FOUND)
        payload = self._payload(handler, route, path, query, raw)
        return self._run(route, payload, deadline)

    def _payload(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        route: _Route,
        path: str,
        query: str,
        raw: bytes,
    ) -> Dict[str, Any]:
        headers = {name.lower(): _header_text(v) for name, v in handler.headers.items()}
        content_type = _header_text(handler.headers.get("content-type", ""))
        return {
            "query_params": dict(parse_qsl(query, keep_blank_values=True)),
            "path_params": route.path_params(path),
            "headers": headers,
            "path": route.api_path,
            "method": handler.command,
            "body": _json_body(content_type, raw),
            "trigger": {
                "type": "http",
                "path": route.api_path,
                "method": handler.command,
            },
        }

    def _run(self, route: _Route, payload: Dict[str, Any], deadline: float) -> _Reply:
        binding = route.binding
        if route.condition is not None:
            verdict = self._call(route.condition, payload, binding, None, deadline)
            if verdict is False:
                return _envelope(422, _SKIPPED)
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
        return _TIMED_OUT

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
            raise _AbortError(_TIMED_OUT)
        try:
            result = self._caller.call(
                function_id, payload, namespace=binding.namespace, metadata=metadata,
                timeout=remaining,
            )  # fmt: skip
        except CallFailed as exc:
            if time.monotonic() >= deadline - _CLOCK_SLACK:
                raise _AbortError(_TIMED_OUT) from None
            raise _AbortError(self._failure(function_id, binding, exc)) from None
        except Exception:  # noqa: BLE001 - a broken call path still gets an answer
            _log.exception("http trigger %s: calling %s broke", binding.id, function_id)
            failure = CallFailed("INTERNAL_ERROR", "internal server error")
            raise _AbortError(self._failure(function_id, binding, failure)) from None
        if time.monotonic() >= deadline:
            raise _AbortError(_TIMED_OUT)
        return result

    def _failure(self, function_id: str, binding: Binding, exc: CallFailed) -> _Reply:
        error_id = "%x" % (time.time_ns() & 0xFFFFFFFFFFFF)
        _log.error(
            "http trigger %s: %s::%s failed with %s: %s (error_id %s)",
            binding.id, binding.namespace, function_id, exc.code, exc.message, error_id,
        )  # fmt: skip
        error = {"code": exc.code, "message": exc.message, "error_id": error_id}
        return _envelope(500, {"error": error})
