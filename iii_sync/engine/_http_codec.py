"""Request payloads and responses of the ``http`` trigger provider.

The request side reads the body (``content-length`` or chunked) and builds the
payload a bound function receives: ``query_params``, ``path_params``,
``headers``, ``path`` (the registered pattern), ``method``, ``body`` (parsed
only for a JSON content type) and ``trigger``.

The response side reads a function's non-null return as ``{status_code,
headers, body}``, writes the engine's JSON envelopes for errors (404, 422,
500) and adds the permissive CORS headers that approximate the engine's
default. Framing headers are always this server's own.
"""

import http.server
import json
import logging
import re
from typing import Any, Dict, List, Tuple
from urllib.parse import parse_qsl, urlsplit

from .. import _protocol
from ._http_routes import Route

_log = logging.getLogger(__name__)

# The largest request body read. The engine's handler reads a body without a
# limit; a stand-in that holds bodies in memory refuses larger ones with 413
# before reading them, which also keeps an absurd content-length from being
# allocated. A body this large could not reach a worker in one WebSocket
# message under the engine's limits anyway.
MAX_BODY_SIZE = 64 * 1024 * 1024

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
PREFLIGHT_HEADERS = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "*"),
    ("access-control-allow-headers", "*"),
    ("vary", "origin, access-control-request-method, access-control-request-headers"),
]

NOT_FOUND = {"error": {"code": "NOT_FOUND", "message": "Not Found"}}
SKIPPED = {
    "error": {"code": "CONDITION_NOT_MET", "message": "Request condition not met"},
    "skipped": True,
}


class BodyTooLargeError(Exception):
    """The request body is larger than :data:`MAX_BODY_SIZE`."""


class Reply:
    """A response ready to write: status, header pairs and body bytes.

    ``cors`` is False for answers the engine gives outside its CORS layer
    (timeouts, broken framing, preflights); ``close`` ends the connection
    after the reply.
    """

    __slots__ = ("body", "close", "cors", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: List[Tuple[str, str]],
        body: bytes = b"",
        cors: bool = True,
        close: bool = False,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.cors = cors
        self.close = close


TIMED_OUT = Reply(504, [], cors=False)


def split_target(target: str) -> Tuple[str, str]:
    """The raw path and query of a request target (origin or absolute form)."""
    if target.startswith("/") or target == "*":
        path, _, query = target.partition("?")
        return path, query
    parts = urlsplit(target)
    return parts.path or "/", parts.query


def _header_text(value: str) -> str:
    # The engine passes "" for a value that is not visible ASCII.
    value = value.strip(" \t")
    return value if _VISIBLE_ASCII.match(value) else ""


def read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    """Reads the whole request body; blocks on the connection's socket.

    Raises:
        ValueError: the body's framing is broken.
        BodyTooLargeError: the body is larger than :data:`MAX_BODY_SIZE`;
            nothing more was read.
        OSError: reading the socket failed or timed out.
    """
    if "chunked" in handler.headers.get("transfer-encoding", "").lower():
        return _read_chunked(handler.rfile)
    length = handler.headers.get("content-length")
    if length is None:
        return b""
    if not length.strip().isdigit():
        raise ValueError("bad content-length %r" % length)
    _check_size(int(length))
    return handler.rfile.read(int(length))


def _check_size(size: int) -> None:
    if size > MAX_BODY_SIZE:
        raise BodyTooLargeError("%d bytes" % size)


def _read_chunked(stream: Any) -> bytes:
    chunks = []
    total = 0
    while True:
        line = stream.readline(65537)
        size = int(line.split(b";", 1)[0].strip(), 16)  # ValueError if malformed
        if size == 0:
            break
        total += size
        _check_size(total)
        chunks.append(stream.read(size))
        stream.readline()

    # Trailers, if any, end with an empty line.
    while stream.readline(65537) not in (b"\r\n", b"\n", b""):
        pass
    return b"".join(chunks)


def _json_body(content_type: str, raw: bytes) -> Any:
    # Case-sensitive on purpose, as in the engine.
    if "application/json" not in content_type:
        return None

    # What serde cannot parse is null; a repeated key keeps the last value.
    try:
        return _protocol.decode(raw.decode("utf-8"), object_pairs_hook=dict)
    except (ValueError, RecursionError):
        return None


def request_payload(
    handler: http.server.BaseHTTPRequestHandler,
    route: Route,
    path: str,
    query: str,
    raw: bytes,
) -> Dict[str, Any]:
    """The data the bound function receives for this request."""
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


def envelope(status: int, document: Any) -> Reply:
    """A JSON error envelope such as :data:`NOT_FOUND`."""
    return Reply(status, [("content-type", "application/json")], _json_bytes(document))


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


def encode_return(result: Any) -> Reply:
    """Builds the response for a function's non-null return value."""
    fields = result if isinstance(result, dict) else {}
    status = _status_code(fields.get("status_code"))
    if 100 <= status < 200 and status != 101:
        return _informational(status)
    pairs = _header_pairs(fields.get("headers"))
    body = fields.get("body", {})
    headers = _sendable(pairs)
    user_type = next((v for n, v in pairs if n.lower() == "content-type"), None)

    # Without a content type of the function's choosing the body is JSON.
    if user_type is None:
        headers.append(("content-type", "application/json"))
        return Reply(status, headers, _json_bytes(body))
    if isinstance(body, str):
        return Reply(status, headers, body.encode("utf-8", "replace"))
    return Reply(status, headers, b"" if body is None else _json_bytes(body))


def _informational(status: int) -> Reply:
    # hyper cannot end a request with a 1xx answer: it replaces the whole
    # head (headers too) with a bare 500 and ends the connection. 101 it
    # sends as an upgrade nobody takes, which ends the connection as well.
    _log.warning(
        "http: status %d cannot end a request; answering 500 as the engine does",
        status,
    )
    return Reply(500, [], cors=False, close=True)


def _with_cors(headers: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    # The CORS layer's headers replace any of the same name.
    names = {name for name, _ in _CORS_HEADERS}
    return [(n, v) for n, v in headers if n not in names] + _CORS_HEADERS


def send_reply(handler: http.server.BaseHTTPRequestHandler, reply: Reply) -> None:
    """Writes the reply on the handler's connection thread; blocks on the socket."""
    bodiless = reply.status < 200 or reply.status in (204, 304)
    headers = _with_cors(reply.headers) if reply.cors else reply.headers
    if reply.close or reply.status < 200:
        handler.close_connection = True

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
