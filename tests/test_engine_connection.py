"""Connections over real sockets: accept, frames, hold-back, leases, reattach.

engine-protocol §1, §3 and §5.1/§5.8, each rule driven with raw JSON frames.
"""

import json
import logging
import re
import urllib.error
import urllib.request
import uuid

import pytest
import websocket
from engine_support import (  # noqa: F401 (fixtures)
    RawWorker,
    connect_fixture,
    engine_fixture,
    make_engine_fixture,
    warnings_from,
)

from iii_sync.engine._server import MAX_FRAME_SIZE, _size_limits

OPCODE_TEXT = websocket.ABNF.OPCODE_TEXT
OPCODE_CONT = websocket.ABNF.OPCODE_CONT

pytestmark = pytest.mark.timeout(20)

UUID_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)


def test_workerregistered_comes_first_with_uuid_id_and_token(engine):
    worker = RawWorker(engine.url, greet=False)
    try:
        hello = worker.recv()
        assert set(hello) == {"type", "worker_id", "reattach_token"}
        assert hello["type"] == "workerregistered"
        assert UUID_RE.match(hello["worker_id"])
        assert UUID_RE.match(hello["reattach_token"])
        assert hello["worker_id"] != hello["reattach_token"]
    finally:
        worker.close()


def test_frames_sent_before_the_greeting_are_processed(engine):
    ws = websocket.create_connection(engine.url, timeout=5, suppress_origin=True)
    try:
        ws.send('{"type":"ping"}')
        assert json.loads(ws.recv())["type"] == "workerregistered"
        assert json.loads(ws.recv()) == {"type": "pong"}
    finally:
        ws.close()


def test_ping_gets_pong_and_pong_is_ignored(connect):
    worker = connect()
    worker.send({"type": "pong"})
    worker.barrier()


def test_a_websocket_ping_gets_a_pong_with_the_same_payload(connect):
    worker = connect()
    worker.ws.ping(b"are-you-there")
    opcode, data = worker.ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_PONG
    assert data.data == b"are-you-there"


@pytest.mark.parametrize(
    "message, frame_type",
    [
        ("not json", "untyped"),
        ('{"type":"Ping"}', "Ping"),
        ('{"type":"registerfunction"}', "registerfunction"),
        (
            '{"type":"invokefunction","function_id":"f","data":1,"namespace":5}',
            "invokefunction",
        ),
        (
            '{"type":"invokefunction","function_id":"f","data":1,"invocation_id":"x"}',
            "invokefunction",
        ),
        ('{"type":"ping","type":"ping"}', "ping"),
        ('{"type":"unregistertriggertype","id":"x"}', "unregistertriggertype"),
        (b"\x00\x01binary", "untyped"),
    ],
)
def test_a_refused_frame_logs_one_warning_and_keeps_the_connection(
    connect, caplog, message, frame_type
):
    caplog.set_level(logging.DEBUG, logger="iii_sync.engine")
    worker = connect()
    worker.announce(name="noisy")
    caplog.clear()

    if isinstance(message, bytes):
        worker.send_binary(message)
    else:
        worker.send_text(message)
    worker.barrier()

    warnings = warnings_from(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    text = warnings[0].getMessage()
    assert "noisy" in text and worker.id in text and frame_type in text


def nested(depth):
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "pad, answered",
    [(nested(126), True), (nested(127), False), (nested(200), False)],
    ids=["127-deep", "128-deep", "201-deep"],
)
def test_frames_nested_deeper_than_127_are_dropped_with_one_warning(
    connect, caplog, pad, answered
):
    caplog.set_level(logging.DEBUG, logger="iii_sync.engine")
    worker = connect()
    worker.send_text('{"type":"ping","pad":%s}' % pad)

    # The miss is answered inline, after any pong for the padded ping.
    assert worker.call("nope")["error"]["code"] == "function_not_found"
    assert worker.stash == ([{"type": "pong"}] if answered else [])
    warnings = [r.getMessage() for r in warnings_from(caplog)]
    assert warnings == ([] if answered else [warnings[0]])
    assert answered or "nested deeper than 127 levels" in warnings[0]


@pytest.mark.parametrize(
    "data, reason",
    [
        ("1e400", "number out of range"),
        ("-1" + "0" * 400, "number out of range"),
        ('"\\ud800"', "lone surrogate"),
        ('{"a":1,"a":"\\udc00"}', "lone surrogate"),
    ],
)
def test_a_call_serde_cannot_parse_is_dropped_before_routing(
    connect, engine, caplog, data, reason
):
    caplog.set_level(logging.DEBUG, logger="iii_sync.engine")
    target, caller = connect(), connect()
    target.register_function("f")
    target.announce(name="target")
    caplog.clear()

    caller.send_text(
        '{"type":"invokefunction","function_id":"f","invocation_id":"%s",'
        '"data":%s}' % (uuid.uuid4(), data)
    )
    caller.barrier()
    target.barrier()

    # One drop warning, nothing for the target, nothing pending, no error.
    warnings = warnings_from(caplog)
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert reason in warnings[0].getMessage()
    assert target.stash == [] and caller.stash == []
    assert engine._router._pending == {}


needs_frame_cap = pytest.mark.skipif(
    not isinstance(_size_limits(), tuple),
    reason="this websockets release cannot cap a single frame",
)


@needs_frame_cap
def test_a_single_frame_over_16_mib_ends_the_connection(connect):
    worker = connect(timeout=20)
    worker.send_text('{"type":"ping","pad":"%s"}' % ("x" * MAX_FRAME_SIZE))
    worker.expect_closed(timeout=20)  # raises on a timeout instead


def test_a_long_message_in_frames_of_16_mib_is_read(connect):
    worker = connect(timeout=20)
    text = '{"type":"ping","pad":"%s"}' % ("x" * (20 * 1024 * 1024))
    first, rest = text[:MAX_FRAME_SIZE], text[MAX_FRAME_SIZE:]
    worker.ws.send_frame(websocket.ABNF.create_frame(first, OPCODE_TEXT, fin=0))
    worker.ws.send_frame(websocket.ABNF.create_frame(rest, OPCODE_CONT, fin=1))
    assert worker.recv(timeout=20) == {"type": "pong"}


def test_blank_text_telemetry_and_engine_frames_pass_without_a_word(connect, caplog):
    caplog.set_level(logging.DEBUG, logger="iii_sync.engine")
    worker = connect()
    worker.send_text("   \n ")
    worker.send_binary(b'OTLP{"resourceSpans":[]}')
    worker.send_binary(b"MTRC\xff\xfe")
    worker.send_binary(b'LOGS{"resourceLogs":[]}')
    worker.send({"type": "workerregistered", "worker_id": str(uuid.uuid4())})
    worker.send({"type": "registrationrejected", "code": "WHATEVER"})
    worker.send_binary(b'{"type":"pong"}')
    worker.barrier()
    assert warnings_from(caplog) == []


def test_the_otel_path_accepts_telemetry_and_sends_nothing(engine, caplog):
    caplog.set_level(logging.DEBUG, logger="iii_sync.engine")
    ws = websocket.create_connection(
        engine.url + "/otel", timeout=5, suppress_origin=True
    )
    try:
        ws.send_binary(b'OTLP{"resourceSpans":[]}')
        ws.send("text is ignored")
        ws.ping(b"p")
        opcode, _ = ws.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_PONG
    finally:
        ws.close()
    assert engine.workers() == [] or all(w.name is None for w in engine.workers())
    assert warnings_from(caplog) == []


def test_other_paths_get_404(engine):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(engine.url + "/nope", timeout=5)
    assert info.value.status_code == 404
    http_url = engine.url.replace("ws://", "http://") + "/ws/channels/x"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(http_url, timeout=5)


# Namespace hold-back (§3.3)


def test_registrations_wait_for_the_announce(connect):
    worker, caller = connect(), connect()
    worker.register_function("svc::f")
    worker.barrier()
    miss = caller.call("svc::f")
    assert miss["error"]["code"] == "function_not_found"

    assert worker.announce(name="svc", namespace="orders")["result"] == {
        "success": True
    }
    invocation_id = caller.invoke("svc::f", {}, namespace="orders")
    invoke = worker.expect_invoke("svc::f")
    worker.answer(invoke, {"ok": 1})
    assert caller.expect_result(invocation_id)["result"] == {"ok": 1}


def test_the_grace_period_fixes_an_unannounced_worker_to_default(make_engine):
    engine = make_engine(namespace_grace=0.2)
    worker = RawWorker(engine.url)
    try:
        worker.register_function("late::f")
        view = _wait_for_function(engine, ("default", "late::f"))
        assert view
        # A later announce cannot move it: the fixed namespace wins.
        worker.announce(name="late", namespace="orders")
        assert [w.namespace for w in engine.workers()] == ["default"]
    finally:
        worker.close()


def test_the_grace_env_var_overrides_the_argument(make_engine, monkeypatch):
    monkeypatch.setenv("III_NAMESPACE_GRACE_MS", "100")
    engine = make_engine(namespace_grace=60.0)
    worker = RawWorker(engine.url)
    try:
        worker.register_function("env::f")
        assert _wait_for_function(engine, ("default", "env::f"))
    finally:
        worker.close()


def _wait_for_function(engine, key, timeout=5.0):
    from worker_support import wait_until

    return wait_until(lambda: key in engine.functions(), timeout)


# Worker-name leases (§3.4)


def test_a_taken_name_is_rejected_and_the_connection_closed(connect):
    first, second = connect(), connect()
    first.announce(name="svc")
    second.register_function("svc::held")
    second.invoke("engine::workers::register", {"name": "svc", "pid": 2})
    rejected = second.recv()
    assert rejected == {
        "type": "registrationrejected",
        "code": "WORKER_NAMESPACE_CONFLICT",
        "namespace": "default",
        "worker_name": "svc",
        "owner_worker_id": first.id,
    }
    assert second.expect_closed() == b""  # a Close frame without a status code
    # Its held registration died with it.
    assert first.call("svc::held")["error"]["code"] == "function_not_found"


def test_names_are_per_namespace_and_free_again_after_disconnect(connect):
    first, other_ns = connect(), connect()
    first.announce(name="svc")
    assert other_ns.announce(name="svc", namespace="orders")["result"]["success"]
    first.close()
    third = connect()
    # The lease is released during the first connection's teardown.
    from worker_support import wait_until

    assert wait_until(lambda: third.announce(name="svc")["result"]["success"])


# Function ownership (§5.1, §5.8)


def test_a_function_owned_elsewhere_is_rejected_and_the_loser_stays_usable(connect):
    owner, loser = connect(), connect()
    owner.announce(name="a")
    owner.register_function("svc::f")
    owner.barrier()
    loser.announce(name="b")
    loser.register_function("svc::f")
    assert loser.recv() == {
        "type": "registrationrejected",
        "code": "FUNCTION_NAMESPACE_CONFLICT",
        "namespace": "default",
        "function_id": "svc::f",
        "owner_worker_id": owner.id,
    }
    loser.barrier()
    invocation_id = loser.invoke("svc::f", {})
    owner.answer(owner.expect_invoke("svc::f"), "from owner")
    assert loser.expect_result(invocation_id)["result"] == "from owner"


def test_the_engine_prefix_is_reserved_outside_default(connect):
    worker = connect()
    worker.announce(name="x", namespace="orders")
    worker.register_function("engine::mine")
    assert worker.recv() == {
        "type": "registrationrejected",
        "code": "FUNCTION_NAMESPACE_CONFLICT",
        "namespace": "orders",
        "function_id": "engine::mine",
        "owner_worker_id": "",
    }


def test_unregisterfunction_removes_only_the_owners_function(connect):
    owner, other = connect(), connect()
    owner.announce(name="a")
    other.announce(name="b")
    owner.register_function("svc::f")
    other.send({"type": "unregisterfunction", "id": "svc::f"})
    other.barrier()
    owner.barrier()
    invocation_id = other.invoke("svc::f", {})
    owner.answer(owner.expect_invoke(), 1)
    assert other.expect_result(invocation_id)["result"] == 1

    owner.send({"type": "unregisterfunction", "id": "svc::f"})
    owner.barrier()
    assert other.call("svc::f")["error"]["code"] == "function_not_found"


# Teardown (§3.7)


def test_killing_a_worker_mid_call_stops_the_callers_invocation(connect, engine):
    target, caller = connect(), connect()
    target.announce(name="target")
    target.register_function("slow::f")
    target.barrier()
    invocation_id = caller.invoke("slow::f", {})
    target.expect_invoke("slow::f")

    target.ws.sock.close()  # no Close frame: a crash
    assert caller.expect_result(invocation_id)["error"] == {
        "code": "invocation_stopped",
        "message": "Invocation stopped",
    }
    assert ("default", "slow::f") not in engine.functions()


def test_a_departed_callers_pending_call_is_dropped_quietly(connect, engine, caplog):
    caplog.set_level(logging.DEBUG, logger="iii_sync.engine")
    target, caller = connect(), connect()
    target.announce(name="target")
    target.register_function("slow::f")
    target.barrier()
    caller.invoke("slow::f", {})
    invoke = target.expect_invoke("slow::f")
    caller.close()

    from worker_support import wait_until

    assert wait_until(lambda: [w.id for w in engine.workers()] == [target.id])
    target.answer(invoke, "too late")
    target.barrier()
    assert warnings_from(caplog) == []


def test_calls_nest_without_deadlock(connect):
    a, b = connect(), connect()
    a.announce(name="a")
    b.announce(name="b")
    a.register_function("a::inner")
    b.register_function("b::outer")
    a.barrier()
    b.barrier()

    outer_id = a.invoke("b::outer", {})
    outer = b.expect_invoke("b::outer")
    inner_id = b.invoke("a::inner", {"depth": 2})
    inner = a.expect_invoke("a::inner")
    a.answer(inner, "inner done")
    assert b.expect_result(inner_id)["result"] == "inner done"
    b.answer(outer, "outer done")
    assert a.expect_result(outer_id)["result"] == "outer done"


def test_a_worker_may_call_its_own_function(connect):
    worker = connect()
    worker.announce(name="self")
    worker.register_function("self::f")
    worker.barrier()
    invocation_id = worker.invoke("self::f", {"x": 1})
    invoke = worker.expect_invoke("self::f")
    assert invoke["invocation_id"] == invocation_id
    worker.answer(invoke, 42)
    assert worker.expect_result(invocation_id)["result"] == 42


# Reattach (§3.5)


def test_reattach_with_the_token_evicts_the_previous_connection(connect, engine):
    old, caller = connect(), connect()
    old.announce(name="svc")
    old.register_function("svc::f")
    old.barrier()
    pending = caller.invoke("svc::f", {})
    old.expect_invoke("svc::f")

    new = connect()
    new.send(
        {
            "type": "reattach",
            "previous_worker_id": old.id.upper(),
            "reattach_token": old.token,
        }
    )
    new.barrier()  # returns only once the old connection is torn down
    assert old.id not in [w.id for w in engine.workers()]
    assert caller.expect_result(pending)["error"]["code"] == "invocation_stopped"

    # The replay then lands as usual, the name is free again.
    new.register_function("svc::f")
    assert new.announce(name="svc")["result"]["success"]
    assert ("default", "svc::f") in engine.functions()


@pytest.mark.parametrize("token", [None, "wrong", "upper"])
def test_reattach_without_the_right_token_is_ignored_with_a_warning(
    connect, engine, caplog, token
):
    caplog.set_level(logging.DEBUG, logger="iii_sync.engine")
    old = connect()
    new = connect()
    frame = {"type": "reattach", "previous_worker_id": old.id}
    if token is not None:
        frame["reattach_token"] = old.token.upper() if token == "upper" else token
    new.send(frame)
    new.barrier()
    assert old.id in [w.id for w in engine.workers()]
    old.barrier()
    warnings = warnings_from(caplog)
    assert len(warnings) == 1 and "token" in warnings[0].getMessage()
    assert old.token not in caplog.text


def test_reattach_to_an_unknown_or_own_id_is_ignored_silently(connect, caplog):
    caplog.set_level(logging.DEBUG, logger="iii_sync.engine")
    worker = connect()
    worker.send({"type": "reattach", "previous_worker_id": str(uuid.uuid4())})
    worker.send({"type": "reattach", "previous_worker_id": "garbage"})
    worker.send(
        {
            "type": "reattach",
            "previous_worker_id": worker.id,
            "reattach_token": worker.token,
        }
    )
    worker.barrier()
    assert warnings_from(caplog) == []


def test_connect_and_disconnect_log_one_info_line_each(connect, caplog):
    caplog.set_level(logging.INFO, logger="iii_sync.engine")
    worker = connect()
    worker.register_function("svc::f")
    worker.announce(name="svc-worker", namespace="orders")
    worker.close()
    from worker_support import wait_until

    def lines():
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "iii_sync.engine._lifecycle" and r.levelname == "INFO"
        ]

    assert wait_until(lambda: len(lines()) == 2)
    connected, disconnected = lines()
    for line in (connected, disconnected):
        assert "svc-worker" in line and "orders" in line and worker.id in line
        assert "1 functions" in line
    assert worker.token not in caplog.text


# Engine lifecycle


def test_stop_closes_connections_ends_calls_and_joins_threads(make_engine):
    import threading
    import time

    from worker_support import wait_until

    engine = make_engine()
    assert engine.port != 0 and engine.url.endswith(":%d" % engine.port)
    target, caller = RawWorker(engine.url), RawWorker(engine.url)
    target.announce(name="target")
    target.register_function("slow::f")
    target.barrier()
    caller.invoke("slow::f", {})
    target.expect_invoke("slow::f")

    started = time.monotonic()
    engine.stop()
    assert time.monotonic() - started < 5
    for worker in (target, caller):
        assert worker.expect_closed() is None  # dropped without a Close frame
    engine.stop()  # idempotent

    def engine_threads():
        return [
            t.name for t in threading.enumerate() if t.name.startswith("iii-engine")
        ]

    assert wait_until(lambda: engine_threads() == []), engine_threads()


def test_start_twice_is_refused(engine):
    with pytest.raises(RuntimeError):
        engine.start()
