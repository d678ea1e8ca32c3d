"""Tests for iii_sync.engine._http: HttpProvider over real HTTP requests."""

import http.client
import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from iii_sync.engine._http import HttpProvider
from iii_sync.engine._http_codec import MAX_BODY_SIZE
from iii_sync.engine._providers import Binding, CallFailed, TriggerRejected

NOT_FOUND = b'{"error":{"code":"NOT_FOUND","message":"Not Found"}}'
SKIPPED = (
    b'{"error":{"code":"CONDITION_NOT_MET","message":"Request condition not met"},'
    b'"skipped":true}'
)


class FakeCaller:
    """Records calls; answers each function id from a script.

    A scripted exception instance is raised, a callable is called with the
    call record (function_id, data, namespace, metadata, timeout), and any
    other value is returned. A function id not in the script echoes the data.
    """

    def __init__(self, script: Optional[Dict[str, Any]] = None) -> None:
        self.script = dict(script or {})
        self.calls: List[Dict[str, Any]] = []
        self._calls_lock = threading.Lock()

    def call(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = "default",
        metadata: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        record = {
            "function_id": function_id,
            "data": data,
            "namespace": namespace,
            "metadata": metadata,
            "timeout": timeout,
        }
        with self._calls_lock:
            self.calls.append(record)
        if function_id not in self.script:
            return {"body": data}
        answer = self.script[function_id]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(record)
        return answer

    def calls_to(self, function_id: str) -> List[Dict[str, Any]]:
        with self._calls_lock:
            return [c for c in self.calls if c["function_id"] == function_id]


Served = Tuple[HttpProvider, FakeCaller]


def start(caller: FakeCaller, timeout: float = 5.0) -> HttpProvider:
    provider = HttpProvider(caller, host="127.0.0.1", port=0, timeout=timeout)
    provider.start()
    return provider


@pytest.fixture
def served() -> Iterator[Served]:
    caller = FakeCaller()
    provider = start(caller)
    yield provider, caller
    provider.stop()


def bind(
    provider: HttpProvider,
    binding_id: str,
    function_id: str,
    api_path: Optional[str],
    method: Optional[str] = None,
    **extra: Any,
) -> Binding:
    config: Dict[str, Any] = dict(extra.pop("config", {}))
    if api_path is not None:
        config["api_path"] = api_path
    if method is not None:
        config["http_method"] = method
    binding = Binding(binding_id, "http", function_id, config, **extra)
    provider.register(binding)
    return binding


def fetch(
    provider: HttpProvider,
    method: str,
    path: str,
    body: Any = None,
    headers: Optional[Dict[str, str]] = None,
) -> Tuple[int, Any, bytes]:
    """Sends one request with urllib; returns status, headers and body bytes."""
    request = urllib.request.Request(
        provider.url + path, data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def payload_of(caller: FakeCaller, function_id: str) -> Dict[str, Any]:
    calls = caller.calls_to(function_id)
    assert len(calls) == 1, calls
    return calls[0]["data"]  # type: ignore[no-any-return]


# --- registration -----------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("config", [{}, {"api_path": 7}, {"api_path": None}, None, []])
def test_api_path_is_required(config: Any) -> None:
    provider = HttpProvider(FakeCaller(), port=0)
    with pytest.raises(TriggerRejected) as info:
        provider.register(Binding("t", "http", "f", config))
    assert str(info.value) == "api_path is required for http triggers"


@pytest.mark.timeout(10)
def test_same_shape_with_other_parameter_names_is_refused() -> None:
    provider = HttpProvider(FakeCaller(), port=0)
    bind(provider, "t1", "f", "/users/:id")
    with pytest.raises(TriggerRejected) as info:
        bind(provider, "t2", "g", "users/:name")
    assert str(info.value) == (
        "Route 'GET users/:name' conflicts with already-registered route "
        "'GET /users/:id': routes with identical structure but different "
        "path-parameter names are not supported"
    )

    # Another method, or the same key again, is fine.
    bind(provider, "t3", "g", "/users/:name", "post")
    bind(provider, "t4", "h", "users/:id")


@pytest.mark.timeout(10)
def test_same_key_replaces_and_only_the_owner_removes(served: Served) -> None:
    provider, caller = served
    old = bind(provider, "old", "first", "/thing")
    bind(provider, "new", "second", "thing", "get")
    assert fetch(provider, "GET", "/thing")[0] == 200
    assert caller.calls_to("first") == []
    assert len(caller.calls_to("second")) == 1

    # The replaced binding no longer owns the route; its owner does.
    provider.unregister(old)
    assert fetch(provider, "GET", "/thing")[0] == 200
    provider.unregister(Binding("new", "http", "second", {"api_path": "/thing"}))
    assert fetch(provider, "GET", "/thing")[2] == NOT_FOUND
    provider.unregister(Binding("ghost", "http", "x", {"api_path": "/nowhere"}))


# --- the payload --------------------------------------------------------------


@pytest.mark.timeout(10)
def test_payload_fields(served: Served) -> None:
    provider, caller = served
    bind(
        provider, "t-orders", "orders", "shops/:shop/orders/:order", "post",
        metadata={"team": "a"}, namespace="billing",
    )  # fmt: skip
    status, _, _ = fetch(
        provider,
        "POST",
        "/shops/s%201/orders/9?q=1&q=2&flag&name=a+b%21",
        body=b'{"n": 1, "list": [true, null]}',
        headers={"Content-Type": "application/json; charset=utf-8", "X-Trace": "abc"},
    )
    assert status == 200

    record = caller.calls_to("orders")[0]
    assert record["namespace"] == "billing"
    assert record["metadata"] == {"team": "a"}
    assert 0 < record["timeout"] <= 5.0
    data = record["data"]
    assert set(data) == {
        "query_params", "path_params", "headers", "path", "method", "body", "trigger",
    }  # fmt: skip
    assert data["query_params"] == {"q": "2", "flag": "", "name": "a b!"}
    assert data["path_params"] == {"shop": "s%201", "order": "9"}
    assert data["headers"]["x-trace"] == "abc"
    assert data["headers"]["content-type"] == "application/json; charset=utf-8"
    assert all(name == name.lower() for name in data["headers"])
    assert data["path"] == "shops/:shop/orders/:order"
    assert data["method"] == "POST"
    assert data["body"] == {"n": 1, "list": [True, None]}
    assert data["trigger"] == {
        "type": "http",
        "path": "shops/:shop/orders/:order",
        "method": "POST",
    }
    assert "request_body" not in data and "response" not in data
    assert "_caller_worker_id" not in data


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "content_type,raw,expected",
    [
        ("application/json", b'{"a": 1}', {"a": 1}),
        ("application/vnd.api+json; x=application/json", b"[1]", [1]),
        ("application/json", b"{broken", None),
        ("application/json", b"", None),
        ("application/json", b"NaN", None),
        ("application/json", b"\xff", None),
        ("application/json", b'{"a":"\\ud800"}', None),
        ("application/json", b'{"a":"\\ud83d\\ude00"}', {"a": "\U0001f600"}),
        ("application/json", b'{"a":1e400}', None),
        ("application/json", b"[" * 128 + b"]" * 128, None),
        ("application/json", b'{"a":1,"a":2}', {"a": 2}),
        ("Application/JSON", b'{"a": 1}', None),
        ("text/plain", b'{"a": 1}', None),
        ("application/x-www-form-urlencoded", b"a=1", None),
    ],
)
def test_body_is_json_only_for_a_json_content_type(
    served: Served, content_type: str, raw: bytes, expected: Any
) -> None:
    provider, caller = served
    bind(provider, "t-body", "body", "/body", "POST")
    fetch(provider, "POST", "/body", body=raw, headers={"Content-Type": content_type})
    assert payload_of(caller, "body")["body"] == expected


@pytest.mark.timeout(10)
def test_chunked_body_and_repeated_headers(served: Served) -> None:
    provider, caller = served
    bind(provider, "t-chunks", "chunks", "/chunks", "PUT")
    connection = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=10)
    try:
        connection.putrequest("PUT", "/chunks")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("X-Dup", "one")
        connection.putheader("X-Dup", "two")
        connection.putheader("X-Binary", "caf\xe9")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for piece in (b'{"parts":', b" [1, 2]}"):
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        connection.send(b"0\r\n\r\n")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    data = payload_of(caller, "chunks")
    assert data["body"] == {"parts": [1, 2]}
    assert data["headers"]["x-dup"] == "two"
    assert data["headers"]["x-binary"] == ""  # not visible ASCII


# --- the return contract ------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "result,status,headers,body",
    [
        ({"status_code": 201, "body": {"b": 1, "a": 2}}, 201, {}, b'{"a":2,"b":1}'),
        ({"status_code": "201"}, 200, {}, b"{}"),
        ({"status_code": 201.0}, 200, {}, b"{}"),
        ({"status_code": True}, 200, {}, b"{}"),
        ({"status_code": -1}, 200, {}, b"{}"),
        ({"status_code": 99}, 200, {}, b"{}"),
        ({"status_code": 70000}, 200, {}, b"{}"),
        ({"status_code": 65936}, 400, {}, b"{}"),
        ({"status_code": 418, "body": None}, 418, {}, b"null"),
        ("hi", 200, {}, b"{}"),
        ([1, 2], 200, {}, b"{}"),
        ({"body": "hi"}, 200, {}, b'"hi"'),
        ({"body": "caf\u00e9"}, 200, {}, '"caf\u00e9"'.encode("utf-8")),
        (
            {"headers": {"Content-Type": "text/plain", "X-N": 5}, "body": "raw text"},
            200,
            {"content-type": "text/plain", "x-n": None},
            b"raw text",
        ),
        (
            {
                "headers": ["Content-Type: text/csv", "X-A:  spaced ", 123, "no-colon"],
                "body": {"z": 1},
            },
            200,
            {"content-type": "text/csv", "x-a": "spaced"},
            b'{"z":1}',
        ),
        (
            {"headers": {"content-type": "application/json"}, "body": None},
            200,
            {"content-type": "application/json"},
            b"",
        ),
        (
            {"headers": {"Bad Name": "x", "X-Ok": "y\nz"}, "body": []},
            200,
            {"bad name": None, "x-ok": None, "content-type": "application/json"},
            b"[]",
        ),
    ],
)
def test_return_contract(
    served: Served, result: Any, status: int, headers: Dict[str, Any], body: bytes
) -> None:
    provider, caller = served
    caller.script["fn"] = result
    bind(provider, "t-fn", "fn", "/fn")
    got_status, got_headers, got_body = fetch(provider, "GET", "/fn")
    assert (got_status, got_body) == (status, body)
    for name, value in headers.items():
        assert got_headers.get(name) == value
    if "content-type" not in headers:
        assert got_headers["content-type"] == "application/json"


@pytest.mark.timeout(10)
def test_no_body_for_204(served: Served) -> None:
    provider, caller = served
    caller.script["empty"] = {"status_code": 204}
    bind(provider, "t-empty", "empty", "/empty", "DELETE")
    status, headers, body = fetch(provider, "DELETE", "/empty")
    assert (status, body) == (204, b"")
    assert headers.get("content-length") is None


def exchange(provider: HttpProvider, request: bytes) -> bytes:
    """Sends raw bytes; returns everything read until the server closes."""
    with socket.create_connection(("127.0.0.1", provider.port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        chunk = sock.recv(65536)
        while chunk:
            received += chunk
            chunk = sock.recv(65536)
    return received


@pytest.mark.timeout(10)
@pytest.mark.parametrize("status_code", [100, 102, 103, 199, 100 + 65536])
def test_an_informational_status_is_a_bare_500_and_the_connection_ends(
    served: Served, status_code: int
) -> None:
    provider, caller = served
    caller.script["info"] = {
        "status_code": status_code,
        "headers": {"X-Mine": "1"},
        "body": {"x": 1},
    }
    bind(provider, "t-info", "info", "/info")
    received = exchange(provider, b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 500 Internal Server Error"
    assert sorted(line.split(b":")[0] for line in lines[1:]) == [
        b"content-length",
        b"date",
    ]
    assert b"content-length: 0" in lines and body == b""


@pytest.mark.timeout(10)
def test_status_101_is_sent_without_a_body_and_the_connection_ends(
    served: Served,
) -> None:
    provider, caller = served
    caller.script["up"] = {"status_code": 101, "body": {"x": 1}}
    bind(provider, "t-up", "up", "/up")
    received = exchange(provider, b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 101 ")
    assert received.endswith(b"\r\n\r\n") and received.count(b"HTTP/1.1") == 1


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 99999999999999\r\n\r\n",
        b"Content-Length: %d\r\n\r\n" % (MAX_BODY_SIZE + 1),
        b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFF\r\n",
    ],
    ids=["absurd", "one-byte-over", "chunk"],
)
def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(
    served: Served, framing: bytes
) -> None:
    provider, caller = served
    bind(provider, "t-big", "big", "/big", "POST")
    received = exchange(provider, b"POST /big HTTP/1.1\r\nHost: x\r\n" + framing)
    assert received.startswith(b"HTTP/1.1 413 ")
    assert received.endswith(b"content-length: 0\r\n\r\n")
    assert caller.calls_to("big") == []


@pytest.mark.timeout(10)
def test_a_body_that_does_not_arrive_in_time_gets_504() -> None:
    caller = FakeCaller()
    provider = start(caller, timeout=0.3)
    try:
        bind(provider, "t-slow", "slow", "/slow", "POST")
        started = time.monotonic()
        received = exchange(
            provider,
            b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        )
        assert received.startswith(b"HTTP/1.1 504 ")
        assert received.endswith(b"content-length: 0\r\n\r\n")
        assert 0.25 < time.monotonic() - started < 3
        assert caller.calls_to("slow") == []
    finally:
        provider.stop()


# --- errors -------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_handler_error_is_a_500_envelope(served: Served, caplog: Any) -> None:
    provider, caller = served
    caller.script["broken"] = CallFailed("invocation_failed", "it broke")
    caller.script["gone"] = CallFailed(
        "function_not_found", "Function gone not found in namespace default"
    )
    bind(provider, "t-broken", "broken", "/broken")
    bind(provider, "t-gone", "gone", "/gone")

    status, headers, body = fetch(provider, "GET", "/broken")
    assert status == 500
    assert headers["content-type"] == "application/json"
    document = json.loads(body)
    assert list(document) == ["error"]
    assert list(document["error"]) == ["code", "error_id", "message"]  # sorted keys
    assert document["error"]["code"] == "invocation_failed"
    assert document["error"]["message"] == "it broke"
    assert re.match(r"[0-9a-f]{1,12}\Z", document["error"]["error_id"])
    assert document["error"]["error_id"] in caplog.text

    status, _, body = fetch(provider, "GET", "/gone")
    assert status == 500
    assert json.loads(body)["error"]["message"] == (
        "Function gone not found in namespace default"
    )


@pytest.mark.timeout(10)
def test_a_broken_call_path_is_a_500_internal_error(served: Served) -> None:
    provider, caller = served
    caller.script["crash"] = RuntimeError("bug in the call path")
    bind(provider, "t-crash", "crash", "/crash")
    status, _, body = fetch(provider, "GET", "/crash")
    assert status == 500
    error = json.loads(body)["error"]
    assert (error["code"], error["message"]) == (
        "INTERNAL_ERROR",
        "internal server error",
    )


@pytest.mark.timeout(10)
def test_no_route_is_a_404_envelope(served: Served) -> None:
    provider, _ = served
    bind(provider, "t-a", "a", "/a/:x")
    for path in ("/", "/missing", "/a", "/a/", "/a/1/2", "/A/1"):
        status, headers, body = fetch(provider, "GET", path)
        assert (status, body) == (404, NOT_FOUND), path
        assert headers["content-type"] == "application/json"


@pytest.mark.timeout(10)
def test_condition(served: Served) -> None:
    provider, caller = served
    caller.script.update({"no": False, "yes": True, "none": None, "text": "false"})
    caller.script["bad"] = CallFailed("invocation_failed", "condition broke")
    for verdict in ("no", "yes", "none", "text", "bad"):
        bind(
            provider, "t-" + verdict, "target-" + verdict, "/c/" + verdict,
            config={"condition_function_id": verdict}, metadata={"m": 1},
            namespace="ns",
        )  # fmt: skip

    assert fetch(provider, "GET", "/c/no")[::2] == (422, SKIPPED)
    assert caller.calls_to("target-no") == []
    for verdict in ("yes", "none", "text"):
        assert fetch(provider, "GET", "/c/" + verdict)[0] == 200
        assert len(caller.calls_to("target-" + verdict)) == 1
    status, _, body = fetch(provider, "GET", "/c/bad")
    assert status == 500
    assert json.loads(body)["error"]["message"] == "condition broke"
    assert caller.calls_to("target-bad") == []

    # The condition sees the handler's payload and namespace, without metadata.
    condition = caller.calls_to("yes")[0]
    target = caller.calls_to("target-yes")[0]
    assert condition["data"] == target["data"]
    assert condition["namespace"] == "ns"
    assert condition["metadata"] is None
    assert target["metadata"] == {"m": 1}


def _wait_out(record: Dict[str, Any]) -> Any:
    # A caller that honours its timeout, as the engine's call path does.
    threading.Event().wait(record["timeout"])
    raise CallFailed("timeout", "timed out")


@pytest.mark.timeout(15)
def test_timeouts_are_504(caplog: Any) -> None:
    late = threading.Event()
    caller = FakeCaller(
        {
            "slow": _wait_out,
            "late": lambda record: late.wait(record["timeout"] + 0.3) or {"body": 1},
            "null": None,
        }
    )
    provider = start(caller, timeout=0.5)
    try:
        for name in ("slow", "late", "null"):
            bind(provider, "t-" + name, name, "/" + name)
        for name in ("slow", "late", "null"):
            began = time.monotonic()
            status, headers, body = fetch(provider, "GET", "/" + name)
            assert (status, body) == (504, b""), name
            assert time.monotonic() - began >= 0.45
            assert headers.get("access-control-allow-origin") is None
    finally:
        provider.stop()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "returned null" in warnings[0].getMessage()
    assert "response channel" in warnings[0].getMessage()


# --- methods ------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_method_matching(served: Served) -> None:
    provider, caller = served
    bind(provider, "t-get", "getter", "/m")
    bind(provider, "t-post", "poster", "/m", "post")
    bind(provider, "t-odd", "odd", "/odd", "purge")

    assert fetch(provider, "POST", "/m", body=b"")[0] == 200
    assert len(caller.calls_to("poster")) == 1
    status, headers, body = fetch(provider, "PATCH", "/m", body=b"")
    assert (status, body) == (405, b"")
    assert headers["allow"] == "GET,HEAD,POST"
    assert fetch(provider, "PURGE", "/m")[0] == 405

    # Unmounted methods are stored but never routed.
    assert fetch(provider, "PURGE", "/odd")[::2] == (404, NOT_FOUND)
    assert caller.calls_to("odd") == []


@pytest.mark.timeout(10)
def test_head_and_options(served: Served) -> None:
    provider, caller = served
    caller.script["head"] = {"headers": {"X-H": "1"}, "body": {"size": 3}}
    bind(provider, "t-get-only", "get-only", "/plain")
    bind(provider, "t-head", "head", "/h", "HEAD")
    bind(provider, "t-options", "options", "/o", "OPTIONS")

    # HEAD reaches a GET route but finds no HEAD binding there.
    status, headers, body = fetch(provider, "HEAD", "/plain")
    assert (status, body) == (404, b"")
    assert caller.calls_to("get-only") == []

    status, headers, body = fetch(provider, "HEAD", "/h")
    assert (status, body, headers["x-h"]) == (200, b"", "1")
    assert headers["content-length"] == str(len(b'{"size":3}'))
    assert payload_of(caller, "head")["method"] == "HEAD"

    assert fetch(provider, "OPTIONS", "/o")[0] == 200
    assert payload_of(caller, "options")["method"] == "OPTIONS"

    # A CORS preflight is answered before routing.
    preflight = {"Origin": "http://x.test", "Access-Control-Request-Method": "PUT"}
    status, headers, body = fetch(provider, "OPTIONS", "/o", headers=preflight)
    assert (status, body) == (200, b"")
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-methods"] == "*"
    assert len(caller.calls_to("options")) == 1


@pytest.mark.timeout(10)
def test_literal_segments_win_over_parameters(served: Served) -> None:
    provider, caller = served
    bind(provider, "t-param", "by-id", "/users/:id")
    bind(provider, "t-me", "me", "/users/me")
    assert fetch(provider, "GET", "/users/me")[0] == 200
    assert fetch(provider, "GET", "/users/7")[0] == 200
    assert len(caller.calls_to("me")) == 1
    assert payload_of(caller, "by-id")["path_params"] == {"id": "7"}

    # The literal route wins the path even when only the other has the method.
    bind(provider, "t-param-post", "by-id-post", "/users/:id", "POST")
    assert fetch(provider, "POST", "/users/me", body=b"")[0] == 405


@pytest.mark.timeout(10)
def test_cors_headers_on_answers(served: Served) -> None:
    provider, caller = served
    caller.script["cors"] = {"headers": {"Access-Control-Allow-Origin": "x"}}
    bind(provider, "t-cors", "cors", "/cors")
    for path in ("/cors", "/missing"):
        headers = fetch(provider, "GET", path)[1]
        assert headers.get_all("access-control-allow-origin") == ["*"]


# --- the server ---------------------------------------------------------------


@pytest.mark.timeout(10)
def test_keep_alive_and_parallel_requests(served: Served) -> None:
    provider, caller = served
    both = threading.Barrier(2, timeout=5)
    caller.script["meet"] = lambda record: {"body": both.wait()}
    bind(provider, "t-meet", "meet", "/meet")
    bind(provider, "t-echo", "echo", "/echo")

    # Two requests on one connection.
    connection = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=10)
    try:
        for _ in range(2):
            connection.request("GET", "/echo")
            response = connection.getresponse()
            assert response.status == 200
            response.read()
    finally:
        connection.close()

    # Two handlers running at once: each waits for the other.
    results: List[int] = []
    worker = threading.Thread(
        target=lambda: results.append(fetch(provider, "GET", "/meet")[0]),
        name="test-http-client",
    )
    worker.start()
    results.append(fetch(provider, "GET", "/meet")[0])
    worker.join(5)
    assert results == [200, 200]


def _iii_http_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("iii-http")]


@pytest.mark.timeout(15)
def test_start_and_stop() -> None:
    called = threading.Event()
    caller = FakeCaller({"null": lambda record: called.set()})  # returns None
    provider = HttpProvider(caller, port=0, timeout=30)
    assert provider.port == 0
    provider.start()
    assert provider.port > 0
    assert provider.url == "http://127.0.0.1:%d" % provider.port
    assert "iii-http-server" in _iii_http_threads()
    bind(provider, "t-null", "null", "/null")

    # An idle keep-alive connection and a request waiting out its timeout.
    idle = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=10)
    idle.connect()
    waiting = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=10)
    waiting.request("GET", "/null")
    assert called.wait(5)

    began = time.monotonic()
    provider.stop()
    assert time.monotonic() - began < 3
    assert _iii_http_threads() == []
    idle.close()
    waiting.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(provider.url + "/null", timeout=2)


@pytest.mark.timeout(10)
def test_malformed_content_length_is_a_400() -> None:
    provider = start(FakeCaller())
    try:
        bind(provider, "t-x", "x", "/x", "POST")
        connection = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=10)
        try:
            connection.putrequest("POST", "/x")
            connection.putheader("Content-Length", "abc")
            connection.endheaders()
            assert connection.getresponse().status == 400
        finally:
            connection.close()
    finally:
        provider.stop()
