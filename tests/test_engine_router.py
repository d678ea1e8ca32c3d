"""Routing rules without sockets (engine-protocol §4)."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from engine_support import FakeOutbound

from iii_sync.engine._providers import CallFailed
from iii_sync.engine._registry import FunctionEntry, Registry, Worker
from iii_sync.engine._router import Router
from iii_sync.engine._session import WebSocketOutbound

pytestmark = pytest.mark.timeout(10)

ID = "2f1c6d0e-8a4b-4c3d-9e2f-0123456789ab"


@pytest.fixture
def pool():
    executor = ThreadPoolExecutor(4, thread_name_prefix="iii-test-pool")
    yield executor
    executor.shutdown(wait=True)


@pytest.fixture
def registry():
    return Registry()


@pytest.fixture
def router(registry, pool):
    return Router(registry, pool)


def connect(registry, name=None):
    worker = Worker(FakeOutbound(), "127.0.0.1")
    worker.name = name
    registry.add_worker(worker)
    return worker


def offer(registry, worker, function_id, namespace="default"):
    registry.add_function(FunctionEntry(namespace, function_id, owner=worker.id))


def invoke(function_id, data, invocation_id=ID, **extra):
    frame = {"type": "invokefunction", "function_id": function_id, "data": data}
    if invocation_id is not None:
        frame["invocation_id"] = invocation_id
    frame.update(extra)
    return frame


def result(invocation_id, **fields):
    return dict(
        fields, type="invocationresult", invocation_id=invocation_id, function_id="f"
    )


def test_the_target_gets_the_callers_id_canonical_and_a_caller_id_in_data(
    registry, router
):
    caller, target = connect(registry), connect(registry)
    offer(registry, target, "math::add")

    router.invoke_from_worker(
        caller,
        invoke(
            "math::add",
            {"a": 1, "_caller_worker_id": "forged"},
            invocation_id="{%s}" % ID.upper(),
            metadata={"m": 1},
            traceparent="tp",
        ),
    )

    sent = target.outbound.frames[-1]
    assert sent == {
        "type": "invokefunction",
        "invocation_id": ID,
        "function_id": "math::add",
        "data": {"a": 1, "_caller_worker_id": caller.id},
        "traceparent": "tp",
        "metadata": {"m": 1},
    }
    assert "namespace" not in sent and "action" not in sent


def test_non_object_data_passes_through_unchanged(registry, router):
    caller, target = connect(registry), connect(registry)
    offer(registry, target, "f")
    router.invoke_from_worker(caller, invoke("f", [1, 2]))
    assert target.outbound.frames[-1]["data"] == [1, 2]


def test_routing_returns_before_the_target_answers(registry, router):
    caller, target = connect(registry), connect(registry)
    offer(registry, target, "f")
    router.invoke_from_worker(caller, invoke("f", {}, traceparent="tp"))
    assert caller.outbound.frames == []
    assert registry.inflight_count(caller.id) == 1
    assert registry.inflight_count(target.id) == 1

    router.handle_result(target, result(ID.upper(), result={"c": 3}))
    assert caller.outbound.frames == [
        {
            "type": "invocationresult",
            "invocation_id": ID,
            "function_id": "f",
            "result": {"c": 3},
            "traceparent": "tp",
        }
    ]
    assert registry.inflight_count(caller.id) == 0
    assert registry.inflight_count(target.id) == 0


def test_error_wins_over_result_and_is_passed_through(registry, router):
    caller, target = connect(registry), connect(registry)
    offer(registry, target, "f")
    router.invoke_from_worker(caller, invoke("f", {}))
    error = {"code": "custom", "message": "m", "stacktrace": "st"}
    router.handle_result(target, result(ID, result=1, error=error))
    assert caller.outbound.frames[-1]["error"] == error
    assert "result" not in caller.outbound.frames[-1]


def test_a_null_result_is_omitted(registry, router):
    caller, target = connect(registry), connect(registry)
    offer(registry, target, "f")
    router.invoke_from_worker(caller, invoke("f", {}))
    router.handle_result(target, result(ID, result=None))
    assert "result" not in caller.outbound.frames[-1]


def test_lookup_is_strict_and_the_miss_names_other_namespaces(registry, router):
    caller, target = connect(registry), connect(registry)
    offer(registry, target, "svc::f", "orders")
    offer(registry, target, "svc::f", "billing")

    router.invoke_from_worker(caller, invoke("svc::f", {}))
    error = caller.outbound.frames[-1]["error"]
    assert error == {
        "code": "function_not_found",
        "message": "Function svc::f not found in namespace default. "
        "It is registered in namespace(s): billing, orders.",
    }

    router.invoke_from_worker(caller, invoke("nope", {}, namespace="x"))
    assert caller.outbound.frames[-1]["error"]["message"] == (
        "Function nope not found in namespace x."
    )


def test_the_callers_own_namespace_is_never_consulted(registry, router):
    caller, target = connect(registry), connect(registry)
    caller.namespace = "orders"
    offer(registry, target, "f", "orders")
    router.invoke_from_worker(caller, invoke("f", {}))
    assert caller.outbound.frames[-1]["error"]["code"] == "function_not_found"
    router.invoke_from_worker(caller, invoke("f", {}, namespace="orders"))
    assert target.outbound.frames[-1]["function_id"] == "f"


def test_a_blank_namespace_is_answered_only_when_there_is_an_id(registry, router):
    caller = connect(registry)
    router.invoke_from_worker(caller, invoke("f", {}, namespace="  "))
    assert caller.outbound.frames == [
        {
            "type": "invocationresult",
            "invocation_id": ID,
            "function_id": "f",
            "error": {
                "code": "INVALID_NAMESPACE",
                "message": "`namespace` is empty: it was named and left blank. "
                "Give it a name, or omit it to use `default`.",
            },
        }
    ]
    router.invoke_from_worker(caller, invoke("f", {}, invocation_id=None, namespace=""))
    assert len(caller.outbound.frames) == 1


def test_void_discards_the_callers_id_and_never_replies(registry, router):
    caller, target = connect(registry), connect(registry)
    offer(registry, target, "f")
    router.invoke_from_worker(caller, invoke("f", {}, action={"type": "void"}))
    sent = target.outbound.frames[-1]
    assert sent["invocation_id"] != ID
    router.handle_result(target, result(sent["invocation_id"], result=1))
    router.invoke_from_worker(caller, invoke("missing", {}, action={"type": "void"}))
    assert caller.outbound.frames == []
    assert registry.inflight_count(caller.id) == 0


def test_an_id_less_call_is_fire_and_forget_with_a_fresh_id(registry, router):
    caller, target = connect(registry), connect(registry)
    offer(registry, target, "f")
    router.invoke_from_worker(caller, invoke("f", {}, invocation_id=None))
    sent = target.outbound.frames[-1]
    assert len(sent["invocation_id"]) == 36
    router.handle_result(target, result(sent["invocation_id"], result=1))
    assert caller.outbound.frames == []


def test_enqueue_without_a_queue_provider_fails_with_the_engine_text(registry, router):
    caller = connect(registry)
    router.invoke_from_worker(
        caller, invoke("f", {}, action={"type": "enqueue", "queue": "q"})
    )
    assert caller.outbound.frames[-1]["error"] == {
        "code": "enqueue_error",
        "message": "No queue provider is installed. `TriggerAction::Enqueue` routes "
        "through the `engine::queue::enqueue` provider, which the standalone queue "
        "worker registers. Add it with `iii worker add queue`. (underlying: "
        "Function engine::queue::enqueue not found in namespace default)",
    }


def test_enqueue_goes_through_the_queue_provider_with_a_receipt(registry, router):
    caller, queue = connect(registry), connect(registry)
    offer(registry, queue, "engine::queue::enqueue")
    router.invoke_from_worker(
        caller,
        invoke(
            "svc::job",
            {"x": 1},
            namespace="orders",
            baggage="a=1,iii.function.id=old",
            action={"type": "enqueue", "queue": "jobs"},
            metadata={"dropped": True},
        ),
    )
    request = queue.outbound.frames[-1]
    data = request["data"]
    receipt = data["messageReceiptId"]
    assert data == {
        "queue": "jobs",
        "function_id": "svc::job",
        "data": {"x": 1},
        "messageReceiptId": receipt,
        "traceparent": None,
        "baggage": "a=1,iii.function.id=svc::job",
        "namespace": "orders",
    }
    assert "metadata" not in request

    router.handle_result(queue, result(request["invocation_id"], result={"r": "x"}))
    assert caller.outbound.frames[-1]["result"] == {"messageReceiptId": receipt}


def test_halting_ends_pending_calls_with_invocation_stopped(registry, router):
    caller, target = connect(registry), connect(registry)
    offer(registry, target, "f")
    router.invoke_from_worker(caller, invoke("f", {}))
    router.halt(registry.take_inflight(target.id))
    assert caller.outbound.frames[-1]["error"] == {
        "code": "invocation_stopped",
        "message": "Invocation stopped",
    }
    # The target's late answer is dropped quietly.
    router.handle_result(target, result(ID, result=1))
    assert len(caller.outbound.frames) == 1


def test_reusing_a_pending_id_fails_the_earlier_waiter(registry, router):
    first, second, target = connect(registry), connect(registry), connect(registry)
    offer(registry, target, "f")
    router.invoke_from_worker(first, invoke("f", {}))
    router.invoke_from_worker(second, invoke("f", {}))
    assert first.outbound.frames[-1]["error"] == {
        "code": "invocation_error",
        "message": "channel closed",
    }


def test_a_gone_target_fails_at_once(registry, router):
    caller, target = connect(registry), connect(registry)
    offer(registry, target, "f")
    target.outbound.closed = True
    router.invoke_from_worker(caller, invoke("f", {}))
    assert caller.outbound.frames[-1]["error"]["code"] == "channel_send_failed"


def test_builtins_answer_from_the_pool(registry, router):
    caller = connect(registry)
    seen = []
    registry.add_builtin("echo", lambda data: seen.append(data) or data, "echo")
    router.invoke_from_worker(caller, invoke("echo", {"x": 1}))
    answer = caller.outbound.wait_for(1)[-1]
    assert seen == [{"x": 1, "_caller_worker_id": caller.id}]
    assert answer["result"] == seen[0]


def test_in_process_calls_carry_metadata_and_no_caller_id(registry, router, pool):
    target = connect(registry)
    offer(registry, target, "f", "orders")
    future = pool.submit(
        router.call, "f", {"a": 1}, namespace="orders", metadata={"m": 2}, timeout=5
    )
    sent = target.outbound.wait_for(1)[-1]
    assert sent["data"] == {"a": 1} and sent["metadata"] == {"m": 2}
    router.handle_result(target, result(sent["invocation_id"], result={"ok": True}))
    assert future.result(5) == {"ok": True}


def test_in_process_misses_and_errors_raise_call_failed(registry, router):
    with pytest.raises(CallFailed) as info:
        router.call("nope", {}, namespace="orders")
    assert info.value.code == "function_not_found"
    assert info.value.message == "Function nope not found in namespace orders"

    target = connect(registry)
    offer(registry, target, "slow")
    with pytest.raises(CallFailed) as info:
        router.call("slow", {}, timeout=0.05)
    assert info.value.code == "timeout"


# Frames the wire codec refuses to encode


class RecordingConnection:
    """The part of a ``websockets`` connection that WebSocketOutbound uses."""

    def __init__(self):
        self.texts = []
        self.closed = False

    def send(self, text):
        self.texts.append(json.loads(text))

    def close(self, code=None):
        self.closed = True


def connect_real_outbound(registry):
    connection = RecordingConnection()
    worker = Worker(WebSocketOutbound(connection), "127.0.0.1")
    registry.add_worker(worker)
    return worker, connection


# A lone surrogate can reach the router only from an in-process caller; a
# value nested 127 levels deep in data ends deeper than the codec allows.
UNENCODABLE = ["\ud800", {"deep": json.loads("[" * 127 + "]" * 127)}]


@pytest.mark.parametrize("data", UNENCODABLE, ids=["surrogate", "deep"])
def test_an_unencodable_call_fails_for_its_caller_and_spares_the_target(
    registry, router, caplog, data
):
    caller = connect(registry)
    target, connection = connect_real_outbound(registry)
    offer(registry, target, "f")

    router.invoke_from_worker(caller, invoke("f", data))

    error = caller.outbound.frames[-1]["error"]
    assert error["code"] == "invocation_failed"
    assert error["message"].startswith("the engine could not encode the call of f")
    assert not connection.closed and connection.texts == []
    assert router._pending == {} and registry.inflight_count(target.id) == 0
    assert registry.inflight_count(caller.id) == 0
    assert any("could not send invocation" in r.getMessage() for r in caplog.records)

    # The target still takes calls.
    router.invoke_from_worker(caller, invoke("f", {"ok": 1}))
    assert connection.texts[-1]["data"] == {"ok": 1, "_caller_worker_id": caller.id}


def test_an_unencodable_in_process_call_raises_and_leaves_nothing_behind(
    registry, router
):
    target, connection = connect_real_outbound(registry)
    offer(registry, target, "f")
    with pytest.raises(CallFailed) as info:
        router.call("f", {"body": "\ud800"}, timeout=5)
    assert info.value.code == "invocation_failed"
    assert "lone surrogate" in info.value.message
    assert router._pending == {} and not connection.closed


def test_an_unencodable_result_reaches_the_caller_as_an_error(registry, router):
    caller, connection = connect_real_outbound(registry)
    target = connect(registry)
    offer(registry, target, "f")
    router.invoke_from_worker(caller, invoke("f", {}))

    router.handle_result(target, result(ID, result="\udfff"))

    answer = connection.texts[-1]
    assert answer["invocation_id"] == ID
    assert answer["error"]["code"] == "invocation_failed"
    assert answer["error"]["message"].startswith(
        "the engine could not encode the result of f"
    )
    assert not connection.closed and registry.inflight_count(caller.id) == 0


def test_worker_send_reports_an_unencodable_frame_as_not_sent(registry, caplog):
    worker, connection = connect_real_outbound(registry)
    assert worker.send({"type": "invocationresult", "result": "\ud800"}) is False
    assert connection.texts == [] and not connection.closed
    assert any("could not encode" in r.getMessage() for r in caplog.records)
