"""End to end: iii_sync workers and the embedded engine over real sockets."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from worker_support import FAST, wait_until

import iii_sync
from iii_sync import ConnectionState, InvocationError

engine_module = pytest.importorskip("iii_sync.engine")


@pytest.fixture
def engine():
    with engine_module.LocalEngine(port=0, http_port=0) as local:
        yield local


@pytest.fixture
def pair(engine, make_worker):
    return make_worker(engine.url, name="alpha"), make_worker(engine.url, name="beta")


def http(engine, method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        engine.http_url + path,
        data=data,
        method=method,
        headers=dict({"Content-Type": "application/json"}, **(headers or {})),
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_calls_both_ways_between_two_workers(pair):
    alpha, beta = pair
    alpha.register_function("alpha::double", lambda d: d["n"] * 2)
    beta.register_function(
        "beta::inc",
        lambda d, context: {"n": d["n"] + 1, "caller": context.caller_worker_id},
    )
    alpha.sync_registrations()
    beta.sync_registrations()

    assert beta.trigger("alpha::double", {"n": 21}) == 42
    result = alpha.trigger("beta::inc", {"n": 1})
    assert result == {"n": 2, "caller": alpha.worker_id}
    assert len(alpha._pending) == len(beta._pending) == 0


def test_registered_functions_are_listed(pair):
    alpha, beta = pair
    alpha.register_function("alpha::listed", lambda d: d, description="listed one")
    alpha.sync_registrations()
    listed = beta.trigger("engine::functions::list", {})["functions"]
    entry = next(f for f in listed if f["function_id"] == "alpha::listed")
    assert entry["namespace"] == "default"
    assert entry["description"] == "listed one"

    workers = beta.trigger("engine::workers::list", {})["workers"]
    names = {w["name"]: w for w in workers}
    assert names["alpha"]["function_count"] == 1
    assert names["alpha"]["runtime"] == "python"


def test_errors_cross_with_codes_and_traces(pair):
    alpha, beta = pair

    def fails(data):
        raise ValueError("bad input")

    def refuses(data):
        raise InvocationError("not_allowed", "nope")

    alpha.register_function("alpha::fails", fails)
    alpha.register_function("alpha::refuses", refuses)
    alpha.sync_registrations()

    with pytest.raises(InvocationError) as info:
        beta.trigger("alpha::fails", {})
    assert info.value.code == "invocation_failed"
    assert info.value.message == "bad input"
    assert "ValueError" in info.value.stacktrace

    with pytest.raises(InvocationError) as info:
        beta.trigger("alpha::refuses", {})
    assert (info.value.code, info.value.message) == ("not_allowed", "nope")

    with pytest.raises(InvocationError) as info:
        beta.trigger("nobody::home", {})
    assert info.value.code == "function_not_found"
    assert info.value.message == "Function nobody::home not found in namespace default."


def test_timeout_leaves_nothing_pending(pair):
    alpha, beta = pair
    release = threading.Event()
    alpha.register_function("alpha::hang", lambda d: release.wait(10))
    alpha.sync_registrations()
    with pytest.raises(iii_sync.InvocationTimeoutError):
        beta.trigger("alpha::hang", {}, timeout=0.3)
    assert len(beta._pending) == 0
    release.set()
    assert beta.trigger("engine::workers::list", {}, timeout=5)


def test_nested_calls_with_one_handler_thread(engine, make_worker):
    worker = make_worker(engine.url, name="nested", max_workers=1)

    @worker.function("nested::depth")
    def depth(data):
        if data["n"] == 0:
            return 0
        return 1 + worker.trigger("nested::depth", {"n": data["n"] - 1})

    worker.sync_registrations()
    assert worker.trigger("nested::depth", {"n": 8}, timeout=20) == 8


def test_killed_worker_mid_call_gives_invocation_stopped(pair):
    alpha, beta = pair
    started = threading.Event()
    alpha.register_function("alpha::slow", lambda d: (started.set(), time.sleep(1)))
    alpha.sync_registrations()
    future = beta.trigger_async("alpha::slow", {}, timeout=10)
    assert started.wait(5)
    alpha._connection.transport.abort()
    with pytest.raises(InvocationError) as info:
        future.result(5)
    assert info.value.code == "invocation_stopped"


def test_close_during_in_flight_work_delivers_the_result(pair):
    alpha, beta = pair
    started = threading.Event()

    def slow(data):
        started.set()
        time.sleep(0.5)
        return "done"

    alpha.register_function("alpha::slow", slow)
    alpha.sync_registrations()
    future = beta.trigger_async("alpha::slow", {}, timeout=10)
    assert started.wait(5)
    alpha.close(timeout=5)
    assert future.result(5) == "done"


def test_engine_restart_replays_registrations(make_worker):
    first = engine_module.LocalEngine(port=0, http_port=0)
    first.start()
    port = int(first.url.rsplit(":", 1)[1])
    worker = make_worker(first.url, name="survivor")
    worker.register_function("survivor::ping", lambda d: "pong")
    worker.register_trigger("http", "survivor::ping", {"api_path": "/ping"})
    worker.sync_registrations()
    first.stop()
    assert wait_until(lambda: worker.state != ConnectionState.CONNECTED, 5)

    with engine_module.LocalEngine(port=port, http_port=0) as second:
        assert worker.wait_until_connected(10)
        caller = make_worker(second.url, name="caller")
        assert caller.trigger("survivor::ping", {}, timeout=5) == "pong"
        # A bare string return is a 200 with an empty object body (§7.1).
        assert http(second, "GET", "/ping") == (200, {})


def test_http_trigger_with_a_real_request(engine, make_worker):
    worker = make_worker(engine.url, name="web")

    @worker.function("users::get")
    def get_user(request):
        return {
            "status_code": 201,
            "headers": {"x-user": request["path_params"]["id"]},
            "body": {
                "id": request["path_params"]["id"],
                "q": request["query_params"].get("q"),
                "body": request["body"],
            },
        }

    trigger = worker.register_trigger(
        "http", "users::get", {"api_path": "/users/:id", "http_method": "POST"}
    )
    worker.sync_registrations()
    status, body = http(engine, "POST", "/users/42?q=x", {"hello": 1})
    assert status == 201
    assert body == {"id": "42", "q": "x", "body": {"hello": 1}}
    assert trigger.error is None
    assert http(engine, "GET", "/missing")[0] == 404


def test_refused_trigger_is_visible_on_the_trigger(engine, make_worker):
    worker = make_worker(engine.url, name="refused")
    worker.register_function("r::f", lambda d: d)
    trigger = worker.register_trigger("http", "r::f", {"no_path": True})
    error = trigger.wait_for_error(5)
    assert error is not None and error.code == "trigger_registration_failed"
    assert "api_path is required" in error.message


def test_worker_name_conflict_refuses_the_second(engine, make_worker):
    make_worker(engine.url, name="unique")
    with pytest.raises(iii_sync.RegistrationRejectedError) as info:
        iii_sync.register_worker(engine.url, name="unique", **FAST)
    assert info.value.code == "WORKER_NAMESPACE_CONFLICT"


def test_namespaced_worker_is_reached_with_an_explicit_namespace(engine, make_worker):
    orders = make_worker(engine.url, name="orders-worker", namespace="orders")
    caller = make_worker(engine.url, name="ns-caller")
    orders.register_function("orders::count", lambda d: 7)
    orders.sync_registrations()
    assert caller.trigger("orders::count", {}, namespace="orders") == 7
    with pytest.raises(InvocationError) as info:
        caller.trigger("orders::count", {})
    assert info.value.message.endswith("It is registered in namespace(s): orders.")
    assert orders.trigger("orders::count", {}) == 7


def test_void_reaches_the_target_and_enqueue_has_no_queue(pair):
    alpha, beta = pair
    got = threading.Event()
    alpha.register_function("alpha::sink", lambda d: got.set())
    alpha.sync_registrations()
    beta.trigger_void("alpha::sink", {"x": 1})
    assert got.wait(5)
    with pytest.raises(InvocationError) as info:
        beta.enqueue("jobs", "alpha::sink", {})
    assert info.value.code == "enqueue_error"


def test_state_trigger_fires_on_set(pair):
    alpha, beta = pair
    events = []
    fired = threading.Event()
    alpha.register_function(
        "alpha::on_state", lambda d: (events.append(d), fired.set())
    )
    alpha.register_trigger("state", "alpha::on_state", {"scope": "carts"})
    alpha.sync_registrations()
    beta.trigger("state::set", {"scope": "carts", "key": "c1", "value": {"n": 1}})
    assert fired.wait(5)
    assert events[0]["event_type"] == "state:created"
    assert events[0]["new_value"] == {"n": 1}
    assert beta.trigger("state::get", {"scope": "carts", "key": "c1"}) == {"n": 1}


class Webhooks:
    def __init__(self, worker):
        self.worker = worker
        self.bindings = {}

    def register_trigger(self, config):
        self.bindings[config.id] = config

    def unregister_trigger(self, config):
        self.bindings.pop(config.id, None)

    def fire(self, payload):
        for binding in list(self.bindings.values()):
            self.worker.trigger(
                binding.function_id,
                payload,
                namespace=binding.namespace,
                metadata=binding.metadata,
            )


def test_custom_trigger_type_across_workers(pair):
    alpha, beta = pair
    provider = Webhooks(alpha)
    alpha.register_trigger_type("webhook", "Incoming webhooks", provider)
    alpha.sync_registrations()
    received = []
    beta.register_function(
        "beta::hook", lambda d, metadata: received.append((d, metadata))
    )
    trigger = beta.register_trigger(
        "webhook", "beta::hook", {"path": "/x"}, metadata={"source": "test"}
    )
    beta.sync_registrations()
    assert wait_until(lambda: trigger.id in provider.bindings, 5)
    provider.fire({"event": 1})
    assert received[0][0]["event"] == 1
    assert received[0][1] == {"source": "test"}
    trigger.unregister()
    assert wait_until(lambda: trigger.id not in provider.bindings, 5)


def test_second_owner_of_a_function_sees_the_refusal(pair):
    alpha, beta = pair
    alpha.register_function("shared::f", lambda d: "alpha")
    alpha.sync_registrations()
    ref = beta.register_function("shared::f", lambda d: "beta")
    error = ref.wait_for_error(5)
    assert error is not None and error.code == "FUNCTION_NAMESPACE_CONFLICT"
    assert beta.trigger("shared::f", {}) == "alpha"
