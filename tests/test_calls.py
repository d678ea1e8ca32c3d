"""Outbound calls against the stub engine: results, errors, timeouts, queues."""

import threading
import time

import pytest
from worker_support import wait_until

import iii_sync
from iii_sync import (
    ConnectionLostError,
    FrameValidationError,
    InvocationError,
    InvocationTimeoutError,
    TriggerAction,
)


def answer(results):
    """An on_frame script: answers calls from a {function_id: reply} table."""

    def on_frame(connection, frame):
        if frame.get("type") != "invokefunction" or "invocation_id" not in frame:
            return
        reply = results.get(frame["function_id"])
        if reply is None:
            return
        body = reply(frame) if callable(reply) else reply
        connection.send(
            dict(
                {
                    "type": "invocationresult",
                    "invocation_id": frame["invocation_id"],
                    "function_id": frame["function_id"],
                },
                **body,
            )
        )

    return on_frame


def test_trigger_returns_result_and_sends_data_even_when_none(stub, make_worker):
    stub.on_frame = answer({"echo::x": lambda f: {"result": {"got": f["data"]}}})
    worker = make_worker(stub.url)
    assert worker.trigger("echo::x", {"a": 1}) == {"got": {"a": 1}}
    assert worker.trigger("echo::x") == {"got": None}
    sent = [
        f for f in stub.connections[0].received if f.get("function_id") == "echo::x"
    ]
    assert all("data" in f for f in sent)
    assert len(worker._pending) == 0


def test_remote_error_becomes_invocation_error(stub, make_worker):
    stub.on_frame = answer(
        {"bad::x": {"error": {"code": "nope", "message": "m", "stacktrace": "st"}}}
    )
    worker = make_worker(stub.url)
    with pytest.raises(InvocationError) as info:
        worker.trigger("bad::x", {})
    assert (info.value.code, info.value.message, info.value.stacktrace) == (
        "nope",
        "m",
        "st",
    )
    assert info.value.function_id == "bad::x"


def test_per_call_timeout_wins_no_resend_and_late_result_dropped(stub, make_worker):
    worker = make_worker(stub.url, invocation_timeout=30)
    start = time.monotonic()
    with pytest.raises(InvocationTimeoutError) as info:
        worker.trigger({"function_id": "slow::x", "payload": {}, "timeout_ms": 300})
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed <= 0.6
    assert info.value.invocation_id
    assert len(worker._pending) == 0

    connection = stub.connections[0]
    sent = [f for f in connection.received if f.get("function_id") == "slow::x"]
    assert len(sent) == 1
    connection.send(
        {
            "type": "invocationresult",
            "function_id": "slow::x",
            "invocation_id": info.value.invocation_id,
            "result": 1,
        }
    )
    stub.on_frame = answer({"ok::x": {"result": 2}})
    assert worker.trigger("ok::x", timeout=2) == 2


def test_call_in_flight_fails_at_once_when_connection_drops(stub, make_worker):
    worker = make_worker(stub.url)
    connection = stub.connections[0]
    future = worker.trigger_async("slow::x", {}, timeout=30)
    connection.next_frame("invokefunction")
    start = time.monotonic()
    connection.drop()
    with pytest.raises(ConnectionLostError):
        future.result(5)
    assert time.monotonic() - start < 1.0
    assert len(worker._pending) == 0


def test_trigger_waits_for_the_connection_within_its_timeout(stub, make_worker):
    stub.on_frame = answer({"echo::x": {"result": "ok"}})
    worker = make_worker(stub.url)
    stub.refuse_handshakes = 2
    stub.connections[0].drop()
    assert wait_until(lambda: worker.state != iii_sync.ConnectionState.CONNECTED)
    assert worker.trigger("echo::x", timeout=5) == "ok"
    assert len(stub.connections) == 2


def test_trigger_times_out_while_disconnected(stub, make_worker):
    worker = make_worker(stub.url, reconnect=iii_sync.Backoff(initial=10))
    stub.connections[0].drop()
    assert wait_until(lambda: worker.state != iii_sync.ConnectionState.CONNECTED)
    with pytest.raises(InvocationTimeoutError):
        worker.trigger("echo::x", timeout=0.3)


def test_void_sends_without_invocation_id(stub, make_worker):
    worker = make_worker(stub.url)
    assert worker.trigger_void("fire::x", {"n": 1}) is None
    frame = stub.connections[0].next_frame("invokefunction")
    while frame["function_id"] != "fire::x":
        frame = stub.connections[0].next_frame("invokefunction")
    assert frame["action"] == {"type": "void"}
    assert "invocation_id" not in frame


def test_dict_form_with_trigger_action_objects(stub, make_worker):
    stub.on_frame = answer(
        {
            "q::x": lambda f: {
                "result": {"messageReceiptId": "r1", "action": f["action"]}
            }
        }
    )
    worker = make_worker(stub.url)
    receipt = worker.trigger(
        {"function_id": "q::x", "payload": 1, "action": TriggerAction.Enqueue("jobs")}
    )
    assert receipt["action"] == {"type": "enqueue", "queue": "jobs"}
    assert worker.enqueue("jobs", "q::x", 2)["messageReceiptId"] == "r1"
    assert worker.trigger({"function_id": "q::x", "action": {"type": "void"}}) is None


def test_void_frames_queue_while_disconnected_and_flush_in_order(stub, make_worker):
    worker = make_worker(
        stub.url, reconnect=iii_sync.Backoff(initial=0.5, jitter=0), max_offline_queue=3
    )
    stub.next_connection().drop()
    assert wait_until(lambda: worker.state != iii_sync.ConnectionState.CONNECTED)
    for n in range(3):
        worker.trigger_void("fire::x", n)
    with pytest.raises(ConnectionLostError, match="not queued"):
        worker.trigger_void("fire::x", 99)

    second = stub.next_connection()
    got = []
    while len(got) < 3:
        frame = second.next_frame("invokefunction")
        if frame["function_id"] == "fire::x":
            got.append(frame["data"])
    assert got == [0, 1, 2]


@pytest.mark.parametrize("payload", [{1, 2}, float("nan"), object()])
def test_non_json_payload_raises_before_sending(stub, make_worker, payload):
    worker = make_worker(stub.url)
    before = len(stub.connections[0].received)
    with pytest.raises(FrameValidationError):
        worker.trigger("x::y", payload)
    assert len(stub.connections[0].received) == before


def test_oversized_payload_raises(stub, make_worker):
    worker = make_worker(stub.url, max_message_size=1000)
    with pytest.raises(FrameValidationError, match="limit"):
        worker.trigger("x::y", "x" * 2000)


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_namespace_raises_before_sending(stub, make_worker, blank):
    worker = make_worker(stub.url)
    with pytest.raises(ValueError):
        worker.trigger("x::y", {}, namespace=blank)
    with pytest.raises(ValueError):
        worker.trigger_void("x::y", {}, namespace=blank)


def test_namespace_rules_on_outbound_calls(stub, make_worker):
    stub.on_frame = answer({"a::b": {"result": 1}, "engine::x": {"result": 2}})
    worker = make_worker(stub.url, namespace="orders")
    worker.trigger("a::b")
    worker.trigger("engine::x")
    worker.trigger("a::b", namespace="billing")
    calls = [
        f
        for f in stub.connections[0].received
        if f.get("function_id") in ("a::b", "engine::x")
    ]
    assert [f.get("namespace") for f in calls] == ["orders", None, "billing"]


def test_handler_can_trigger_its_own_functions_nested_with_one_thread(
    stub, make_worker
):
    # The stub plays the engine: it routes calls back to the same worker.
    def route(connection, frame):
        if frame.get("type") == "invokefunction" and frame["function_id"].startswith(
            "depth::"
        ):
            connection.send(
                {
                    "type": "invokefunction",
                    "function_id": "depth::n",
                    "invocation_id": frame["invocation_id"],
                    "data": frame["data"],
                }
            )
        elif frame.get("type") == "invocationresult":
            connection.send(frame)

    worker = make_worker(stub.url, max_workers=1)

    @worker.function("depth::n")
    def depth(data):
        if data["n"] == 0:
            return 0
        return 1 + worker.trigger("depth::n", {"n": data["n"] - 1}, timeout=10)

    stub.on_frame = route
    assert worker.trigger("depth::n", {"n": 6}, timeout=20) == 6


def test_closed_worker_refuses_calls(stub, make_worker):
    worker = make_worker(stub.url)
    worker.close(2)
    with pytest.raises(iii_sync.WorkerClosedError):
        worker.trigger("x::y")
    with pytest.raises(iii_sync.WorkerClosedError):
        worker.register_function("x::z", lambda d: d)


def test_close_fails_waiting_calls(stub, make_worker):
    worker = make_worker(stub.url)
    future = worker.trigger_async("slow::x", {}, timeout=30)
    threading.Thread(target=worker.close, args=(2,)).start()
    with pytest.raises(iii_sync.IIIError):
        future.result(5)


def test_timeout_while_disconnected_says_so(stub, make_worker):
    worker = make_worker(stub.url, reconnect=iii_sync.Backoff(initial=10))
    stub.connections[0].drop()
    assert wait_until(lambda: worker.state != iii_sync.ConnectionState.CONNECTED)
    with pytest.raises(InvocationTimeoutError, match="not connected to ws://"):
        worker.trigger("echo::x", timeout=0.2)
