"""Inbound frames against the stub engine: handlers, bad frames, rejections."""

import threading
import time

import pytest
from stub_engine import TEXT
from worker_support import wait_until

from iii_sync import ConnectionState, RegistrationRejectedError


@pytest.fixture
def served(stub, make_worker):
    worker = make_worker(stub.url, max_workers=1)
    return worker, stub.next_connection()


def test_handler_errors_become_results_and_the_pool_survives(served, caplog):
    worker, connection = served

    def boom(data):
        raise KeyError("x")

    def quit_(data):
        raise SystemExit(1)

    worker.register_function("t::boom", boom)
    worker.register_function("t::quit", quit_)
    worker.register_function("t::ok", lambda d: 1)

    boom_id = connection.invoke("t::boom", {})
    error = connection.result_for(boom_id)["error"]
    assert error["code"] == "invocation_failed" and error["message"] == "'x'"
    assert "KeyError" in error["stacktrace"]
    assert (
        connection.result_for(connection.invoke("t::quit"))["error"]["code"]
        == "invocation_failed"
    )
    assert connection.result_for(connection.invoke("t::ok"))["result"] == 1
    assert caplog.text.count("handler of t::boom raised") == 1


def test_unknown_function_answers_function_not_found(served):
    _, connection = served
    error = connection.result_for(connection.invoke("nope::x"))["error"]
    assert error["code"] == "function_not_found"
    assert "nope::x" in error["message"]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type":"invokefunction","function_id":"t::ok","invocation_id":'
        b'"2f1c1b9a-1111-4222-8333-444455556666","data":"\x99"}',
        b"not json at all",
        b'{"type":"invokefunction","function_id":"t::ok"}',
        b'{"type":"invokefunction","function_id":"t::ok","invocation_id":"i1","data":1}',
        b'{"type":"mystery"}',
        b"[1, 2]",
        b'{"type":"workerregistered","type":"pong"}',
    ],
)
def test_bad_frames_are_dropped_with_a_warning_and_reading_goes_on(
    served, caplog, payload
):
    worker, connection = served
    worker.register_function("t::ok", lambda d: "fine")
    connection.send_raw(payload, TEXT)
    assert connection.result_for(connection.invoke("t::ok"))["result"] == "fine"
    assert "dropped" in caplog.text
    assert worker.state == ConnectionState.CONNECTED
    assert not connection.closed.is_set()
    assert len(connection.stub.connections) == 1


def test_oversized_inbound_message_is_dropped(stub, make_worker, caplog):
    worker = make_worker(stub.url, max_message_size=10_000)
    connection = stub.next_connection()
    worker.register_function("t::ok", lambda d: "fine")
    connection.invoke("t::ok", "x" * 20_000)
    assert connection.result_for(connection.invoke("t::ok"))["result"] == "fine"
    assert "over the 10000-byte limit" in caplog.text


def test_long_handler_does_not_block_pings_or_close(stub, make_worker):
    worker = make_worker(stub.url, max_workers=1, ping_interval=0.1, ping_timeout=0.5)
    connection = stub.next_connection()
    release = threading.Event()
    started = threading.Event()

    def long(data):
        started.set()
        release.wait(10)
        return "late"

    worker.register_function("t::long", long)
    worker.register_function("t::ok", lambda d: "queued")
    first = connection.invoke("t::long")
    assert started.wait(5)
    second = connection.invoke("t::ok")
    pings_before = connection.pings
    assert wait_until(lambda: connection.pings >= pings_before + 3, 3)
    assert worker.state == ConnectionState.CONNECTED

    release.set()
    assert connection.result_for(first)["result"] == "late"
    assert connection.result_for(second)["result"] == "queued"

    started.clear()
    release.clear()
    connection.invoke("t::long")
    assert started.wait(5)
    start = time.monotonic()
    connection.close(1001)
    assert wait_until(lambda: worker.state != ConnectionState.CONNECTED, 2)
    assert time.monotonic() - start < 0.5
    release.set()


def test_full_pool_answers_worker_overloaded(stub, make_worker):
    worker = make_worker(stub.url, max_workers=1, max_queued=1)
    connection = stub.next_connection()
    release = threading.Event()
    worker.register_function("t::wait", lambda d: release.wait(10))
    ids = [connection.invoke("t::wait") for _ in range(3)]
    assert connection.result_for(ids[2])["error"]["code"] == "worker_overloaded"
    release.set()
    assert connection.result_for(ids[0])["result"] is True


def test_result_of_a_dead_connection_is_not_sent_on_the_new_one(
    stub, make_worker, caplog
):
    worker = make_worker(stub.url)
    first = stub.next_connection()
    release = threading.Event()
    started = threading.Event()
    worker.register_function("t::slow", lambda d: (started.set(), release.wait(10)))
    invocation = first.invoke("t::slow")
    assert started.wait(5)
    first.drop()
    second = stub.next_connection()
    assert worker.wait_until_connected(5)
    release.set()
    assert wait_until(lambda: "dropped: its connection is gone" in caplog.text)
    assert all(f.get("invocation_id") != invocation for f in second.received)


def test_worker_name_conflict_is_fatal(served):
    worker, connection = served
    future = worker.trigger_async("slow::x", timeout=30)
    connection.send(
        {
            "type": "registrationrejected",
            "code": "WORKER_NAMESPACE_CONFLICT",
            "namespace": "default",
            "worker_name": worker.name,
            "owner_worker_id": "2f1c1b9a-1111-4222-8333-444455556666",
        }
    )
    with pytest.raises(RegistrationRejectedError) as info:
        future.result(5)
    assert info.value.worker_name == worker.name
    assert worker.state == ConnectionState.FAILED
    with pytest.raises(RegistrationRejectedError):
        worker.trigger("x::y")
    assert wait_until(connection.closed.is_set)
    time.sleep(0.3)  # a reconnect would show up as a second connection by now
    assert len(connection.stub.connections) == 1


def test_function_conflict_is_a_warning_only(served, caplog):
    worker, connection = served
    connection.send(
        {
            "type": "registrationrejected",
            "code": "FUNCTION_NAMESPACE_CONFLICT",
            "namespace": "default",
            "function_id": "t::x",
            "owner_worker_id": "",
        }
    )
    worker.register_function("t::ok", lambda d: 1)
    assert connection.result_for(connection.invoke("t::ok"))["result"] == 1
    assert "engine refused function t::x" in caplog.text
    assert worker.state == ConnectionState.CONNECTED


def test_auth_error_frame_fails_the_worker(served):
    worker, connection = served
    connection.send(
        {"type": "error", "error": {"code": "AUTH_ERROR", "message": "bad token"}}
    )
    assert wait_until(lambda: worker.state == ConnectionState.FAILED)
    assert worker.fatal_error.code == "AUTH_ERROR"


def test_trigger_refusal_reaches_the_trigger(served, caplog):
    worker, connection = served
    trigger = worker.register_trigger("http", "t::x", {})
    frame = connection.next_frame("registertrigger")
    assert frame["config"] == {}
    connection.send(
        {
            "type": "triggerregistrationresult",
            "id": trigger.id,
            "trigger_type": "http",
            "function_id": "t::x",
            "error": {
                "code": "trigger_registration_failed",
                "message": "api_path is required for http triggers",
            },
        }
    )
    error = trigger.wait_for_error(5)
    assert error.code == "trigger_registration_failed"
    assert "api_path" in caplog.text


class Provider:
    def __init__(self):
        self.bound = []
        self.unbound = threading.Event()

    def register_trigger(self, config):
        if config.config.get("bad"):
            raise ValueError("bad config")
        self.bound.append(config)

    def unregister_trigger(self, config):
        self.unbound.set()


def test_trigger_type_provider_gets_bindings_and_answers(served):
    worker, connection = served
    provider = Provider()
    worker.register_trigger_type("webhook", "Webhooks", provider)
    assert connection.next_frame("registertriggertype")["description"] == "Webhooks"

    binding = {
        "type": "registertrigger",
        "id": "b1",
        "trigger_type": "webhook",
        "function_id": "f",
        "config": {"url": "/x"},
        "metadata": {"m": 1},
    }
    connection.send(binding)
    answer = connection.next_frame("triggerregistrationresult")
    assert answer == {
        "type": "triggerregistrationresult",
        "id": "b1",
        "trigger_type": "webhook",
        "function_id": "f",
    }
    assert provider.bound[0].metadata == {"m": 1}

    connection.send(dict(binding, id="b2", config={"bad": True}))
    refused = connection.next_frame("triggerregistrationresult")
    assert refused["error"] == {
        "code": "trigger_registration_failed",
        "message": "bad config",
    }

    connection.send(
        {"type": "unregistertrigger", "id": "b1", "trigger_type": "webhook"}
    )
    assert provider.unbound.wait(5)


def test_binding_for_a_type_not_provided_is_answered(served):
    _, connection = served
    connection.send(
        {
            "type": "registertrigger",
            "id": "b1",
            "trigger_type": "nope",
            "function_id": "f",
            "config": None,
        }
    )
    answer = connection.next_frame("triggerregistrationresult")
    assert answer["error"]["code"] == "trigger_type_not_found"


def test_function_conflict_is_visible_on_the_function(served):
    worker, connection = served
    ref = worker.register_function("t::taken", lambda d: 1)
    connection.send(
        {
            "type": "registrationrejected",
            "code": "FUNCTION_NAMESPACE_CONFLICT",
            "namespace": "default",
            "function_id": "t::taken",
            "owner_worker_id": "2f1c1b9a-1111-4222-8333-444455556666",
        }
    )
    error = ref.wait_for_error(5)
    assert isinstance(error, RegistrationRejectedError)
    assert error.function_id == "t::taken"
    assert worker.state == ConnectionState.CONNECTED
