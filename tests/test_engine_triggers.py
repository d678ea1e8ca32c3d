"""Trigger types over real sockets (engine-protocol §5.4-§5.7, §6.2, §6.8, §7.5)."""

import json
import threading
import urllib.error
import urllib.request

import pytest
from engine_support import (  # noqa: F401 (fixtures)
    connect_fixture,
    engine_fixture,
    make_engine_fixture,
)
from worker_support import wait_until

pytestmark = pytest.mark.timeout(20)


def binding(binding_id, trigger_type="webhook", function_id="svc::f", **extra):
    return dict(
        extra,
        type="registertrigger",
        id=binding_id,
        trigger_type=trigger_type,
        function_id=function_id,
        config=extra.pop("config", {"path": "/hook"}),
    )


def provide(worker, type_id="webhook", **extra):
    worker.send(
        dict(extra, type="registertriggertype", id=type_id, description="Webhooks")
    )


def live_provider(engine, binding_id):
    views = [t for t in engine.triggers() if t.id == binding_id]
    return views[0].provider if views else "missing"


# Worker-provided trigger types


def test_a_binding_without_provider_is_parked_silently_then_replayed(connect, engine):
    user, provider = connect(), connect()
    user.send(binding("t1", metadata={"m": 1}))
    user.announce(name="user")
    assert live_provider(engine, "t1") is None

    provide(provider)
    provider.announce(name="provider")
    relayed = provider.expect_type("registertrigger")
    assert relayed == {
        "type": "registertrigger",
        "id": "t1",
        "trigger_type": "webhook",
        "function_id": "svc::f",
        "config": {"path": "/hook"},
        "metadata": {"m": 1},
    }
    assert live_provider(engine, "t1") == ("default", "webhook")
    user.barrier()
    assert user.stash == []  # success is silent


def test_a_live_binding_is_relayed_at_once_and_unregistered(connect, engine):
    provider, user = connect(), connect()
    provide(provider)
    provider.announce(name="provider")
    user.announce(name="user", namespace="orders")
    user.send(binding("t1", namespace="orders"))
    relayed = provider.expect_type("registertrigger")
    assert relayed["namespace"] == "orders" and "trigger_namespace" not in relayed

    other = connect()  # no ownership check on unregistertrigger (§5.5)
    other.announce(name="other")
    other.send({"type": "unregistertrigger", "id": "t1"})
    assert provider.expect_type("unregistertrigger") == {
        "type": "unregistertrigger",
        "id": "t1",
        "trigger_type": "webhook",
    }
    assert live_provider(engine, "t1") == "missing"


def test_a_provider_error_is_forwarded_parked_and_replayed(connect, engine):
    provider, user = connect(), connect()
    provide(provider)
    provider.announce(name="provider")
    user.announce(name="user")
    user.send(binding("t1"))
    provider.expect_type("registertrigger")

    error = {"code": "bad_config", "message": "path must be absolute"}
    provider.send(
        {
            "type": "triggerregistrationresult",
            "id": "t1",
            "trigger_type": "webhook",
            "function_id": "svc::f",
            "error": error,
        }
    )
    assert user.expect_type("triggerregistrationresult") == {
        "type": "triggerregistrationresult",
        "id": "t1",
        "trigger_type": "webhook",
        "function_id": "svc::f",
        "error": error,
    }
    provider.barrier()
    assert live_provider(engine, "t1") is None

    # Registering the type again replays the parked binding.
    provide(provider)
    assert provider.expect_type("registertrigger")["id"] == "t1"


def test_results_from_others_and_successes_are_ignored(connect, engine):
    provider, user, stranger = connect(), connect(), connect()
    provide(provider)
    provider.announce(name="provider")
    user.announce(name="user")
    user.send(binding("t1"))
    provider.expect_type("registertrigger")
    result = {
        "type": "triggerregistrationresult",
        "id": "t1",
        "trigger_type": "webhook",
        "function_id": "svc::f",
    }
    stranger.send(dict(result, error={"code": "x", "message": "y"}))
    stranger.barrier()
    provider.send(result)
    provider.barrier()
    user.barrier()
    assert user.stash == []
    assert live_provider(engine, "t1") == ("default", "webhook")


def test_a_departing_provider_parks_its_bindings_until_a_new_one(connect, engine):
    provider, user = connect(), connect()
    provide(provider)
    provider.announce(name="provider")
    user.announce(name="user")
    user.send(binding("t1"))
    provider.expect_type("registertrigger")

    provider.close()
    assert wait_until(lambda: live_provider(engine, "t1") is None)
    assert [t.id for t in engine.triggers()] == ["t1"]  # parked, not duplicated
    successor = connect()
    provide(successor)
    successor.announce(name="successor")
    assert successor.expect_type("registertrigger")["id"] == "t1"


def test_a_departing_owner_takes_its_bindings_along(connect, engine):
    provider, user = connect(), connect()
    provide(provider)
    provider.announce(name="provider")
    user.announce(name="user")
    user.send(binding("t1"))
    provider.expect_type("registertrigger")
    user.close()
    assert provider.expect_type("unregistertrigger")["id"] == "t1"


def test_home_provider_wins_and_claims_back_fallen_back_bindings(connect, engine):
    fallback, user = connect(), connect()
    provide(fallback)
    fallback.announce(name="fallback")
    user.announce(name="user", namespace="orders")
    user.send(binding("t1"))
    fallback.expect_type("registertrigger")

    home = connect()
    provide(home)
    home.announce(name="home", namespace="orders")
    relayed = home.expect_type("registertrigger")
    assert relayed["id"] == "t1" and relayed["trigger_namespace"] == "orders"
    assert fallback.expect_type("unregistertrigger")["id"] == "t1"
    assert live_provider(engine, "t1") == ("orders", "webhook")

    home.close()  # back to the default provider
    assert fallback.expect_type("registertrigger")["id"] == "t1"


def test_an_explicit_trigger_namespace_means_only_that_one(connect, engine):
    default_provider, user = connect(), connect()
    provide(default_provider)
    default_provider.announce(name="default-provider")
    user.announce(name="user")
    user.send(binding("t1", trigger_namespace="billing"))
    user.barrier()
    assert live_provider(engine, "t1") is None

    billing = connect()
    provide(billing, namespace="billing")  # explicit provider namespace
    billing.announce(name="billing")
    assert billing.expect_type("registertrigger")["trigger_namespace"] == "billing"


@pytest.mark.parametrize("field", ["namespace", "trigger_namespace"])
def test_a_blank_namespace_on_a_binding_is_answered(connect, engine, field):
    user = connect()
    user.announce(name="user")
    user.send(binding("t1", **{field: " "}))
    refusal = user.expect_type("triggerregistrationresult")
    assert refusal["error"] == {
        "code": "INVALID_NAMESPACE",
        "message": "`%s` is empty: it was named and left blank. Give it a name, "
        "or omit it to use `default`." % field,
    }
    assert live_provider(engine, "t1") == "missing"


def test_a_provider_fires_with_an_ordinary_invoke(connect):
    provider, user = connect(), connect()
    provide(provider)
    provider.announce(name="provider")
    user.register_function("svc::f")
    user.announce(name="user")
    user.send(binding("t1", metadata={"m": 1}))
    relayed = provider.expect_type("registertrigger")

    pending = provider.invoke(
        relayed["function_id"], {"hook": 1}, metadata=relayed["metadata"]
    )
    fired = user.expect_invoke("svc::f")
    assert fired["metadata"] == {"m": 1}
    user.answer(fired, "handled")
    assert provider.expect_result(pending)["result"] == "handled"


# Durable bindings (§6.2)


def test_durable_bindings_park_revive_and_outlive_their_caller(connect, engine):
    caller = connect()
    answer = caller.call(
        "engine::register_trigger",
        {"trigger_type": "webhook", "function_id": "svc::f", "config": {"a": 1}},
    )
    binding_id = answer["result"]["id"]
    assert live_provider(engine, binding_id) is None
    caller.close()

    provider = connect()
    provide(provider)
    provider.announce(name="provider")
    relayed = provider.expect_type("registertrigger")
    assert relayed["id"] == binding_id and relayed["config"] == {"a": 1}

    other = connect()
    removed = other.call("engine::unregister_trigger", {"id": binding_id})
    assert removed["result"] == {"removed": True}
    assert provider.expect_type("unregistertrigger")["id"] == binding_id
    again = other.call("engine::unregister_trigger", {"id": binding_id})
    assert again["result"] == {"removed": False}


def test_durable_binding_waits_for_the_provider_and_reports_its_error(connect):
    provider, caller = connect(), connect()
    provide(provider)
    provider.announce(name="provider")
    pending = caller.invoke(
        "engine::register_trigger", {"trigger_type": "webhook", "function_id": "svc::f"}
    )
    relayed = provider.expect_type("registertrigger")
    provider.send(
        {
            "type": "triggerregistrationresult",
            "id": relayed["id"],
            "trigger_type": "webhook",
            "function_id": "svc::f",
            "error": {"code": "nope", "message": "not today"},
        }
    )
    assert caller.expect_result(pending)["error"] == {
        "code": "trigger_registration_failed",
        "message": "nope: not today",
    }


def test_durable_binding_stops_waiting_when_its_provider_leaves(connect, engine):
    provider, caller = connect(), connect()
    provide(provider)
    provider.announce(name="provider")
    pending = caller.invoke(
        "engine::register_trigger", {"trigger_type": "webhook", "function_id": "svc::f"}
    )
    provider.expect_type("registertrigger")
    provider.close()
    answer = caller.expect_result(pending)  # well before the 10 s ack wait
    assert live_provider(engine, answer["result"]["id"]) is None


def test_durable_binding_refused_by_an_engine_provider(connect):
    caller = connect()
    answer = caller.call(
        "engine::register_trigger",
        {"trigger_type": "subscribe", "function_id": "svc::f", "config": "bad"},
    )
    assert answer["error"]["code"] == "trigger_registration_failed"


# Pub/sub (§6.7, §7.5)


def test_publish_delivers_data_as_is_to_each_subscriber(connect):
    subscriber, publisher = connect(), connect()
    subscriber.register_function("sub::a")
    subscriber.register_function("sub::b")
    for index, function_id in enumerate(("sub::a", "sub::b")):
        subscriber.send(
            binding(
                "s%d" % index,
                "subscribe",
                function_id,
                config={"topic": "news"},
                metadata={"m": 1},
            )
        )
    subscriber.send(binding("s9", "subscribe", "sub::a", config={"topic": "other"}))
    subscriber.announce(name="subscriber")

    answer = publisher.call("publish", {"topic": "news", "data": [1, 2]})
    assert "result" not in answer and "error" not in answer
    fired = [subscriber.expect_invoke(), subscriber.expect_invoke()]
    assert sorted(f["function_id"] for f in fired) == ["sub::a", "sub::b"]
    for frame in fired:
        assert frame["data"] == [1, 2] and "metadata" not in frame
        subscriber.answer(frame, None)


def test_publish_without_a_topic_fails(connect):
    publisher = connect()
    assert publisher.call("publish", {"topic": "", "data": 1})["error"] == {
        "code": "topic_not_set",
        "message": "Topic is not set",
    }


# Discovery trigger types (§6.8)


def test_workers_available_fires_on_connect_announce_and_disconnect(connect):
    watcher = connect()
    watcher.register_function("watch::workers")
    watcher.send(
        binding("w1", "engine::workers-available", "watch::workers", config=None)
    )
    watcher.announce(name="watcher")
    first = watcher.expect_invoke("watch::workers")  # its own announce
    watcher.answer(first, None)

    other = connect()
    other.announce(name="other")
    other.close()
    expected = {
        ("worker_connected", other.id),
        ("worker_metadata_updated", other.id),
        ("worker_disconnected", other.id),
    }
    seen = set()
    while not expected <= seen:  # fires run concurrently: any order
        fired = watcher.expect_invoke("watch::workers")
        seen.add((fired["data"]["event"], fired["data"]["worker_id"]))
        watcher.answer(fired, None)


def test_functions_available_fires_when_the_set_changes(make_engine):
    from engine_support import RawWorker

    engine = make_engine(functions_poll_interval=0.05)
    watcher = RawWorker(engine.url)
    try:
        watcher.register_function("watch::functions")
        watcher.send(
            binding(
                "f1", "engine::functions-available", "watch::functions", config=None
            )
        )
        watcher.announce(name="watcher")
        fired = watcher.expect_invoke("watch::functions")
        assert fired["data"]["event"] == "functions_changed"
        ids = [row["function_id"] for row in fired["data"]["functions"]]
        assert "watch::functions" in ids and "engine::workers::list" in ids
        watcher.answer(fired, None)
    finally:
        watcher.close()


# Wiring of the other in-process providers and the in-process call path


def test_http_triggers_are_served_on_the_http_port(connect, engine):
    worker = connect()
    worker.register_function("web::hello")
    worker.send(
        binding(
            "h1",
            "http",
            "web::hello",
            config={"api_path": "/hello/:who", "http_method": "GET"},
        )
    )
    worker.announce(name="web")
    responses = []

    def request():
        url = engine.http_url + "/hello/ada"
        with urllib.request.urlopen(url, timeout=10) as response:
            responses.append((response.status, json.loads(response.read())))

    client = threading.Thread(target=request, name="test-http-client")
    client.start()
    fired = worker.expect_invoke("web::hello")
    assert fired["data"]["path_params"] == {"who": "ada"}
    assert "_caller_worker_id" not in fired["data"]
    worker.answer(fired, {"status_code": 201, "body": {"hi": "ada"}})
    client.join(10)
    assert responses == [(201, {"hi": "ada"})]


def test_an_http_body_too_deep_to_forward_fails_the_request_not_the_worker(
    connect, engine
):
    # The body parses (127 levels) but sits two levels deeper in the frame.
    worker = connect()
    worker.register_function("web::deep")
    worker.send(
        binding(
            "h1", "http", "web::deep", config={"api_path": "/d", "http_method": "POST"}
        )
    )
    worker.announce(name="web")
    request = urllib.request.Request(
        engine.http_url + "/d",
        data=b"[" * 127 + b"]" * 127,
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    with info.value as response:
        error = json.loads(response.read())["error"]
    assert info.value.code == 500 and error["code"] == "invocation_failed"
    assert "nested deeper than 127" in error["message"]

    # The worker kept its connection: the next call reaches it.
    invocation_id = worker.invoke("web::deep", {"n": 1})
    fired = worker.expect_invoke("web::deep")
    worker.answer(fired, "fine")
    assert worker.expect_result(invocation_id)["result"] == "fine"
    assert ("default", "web::deep") in engine.functions()


def test_http_and_cron_refusals_reach_the_registering_worker(connect):
    worker = connect()
    worker.announce(name="refused")
    worker.send(binding("h1", "http", "f", config={}))
    worker.send(binding("c1", "cron", "f", config={"expression": "* * * * *"}))
    refusals = {}
    for _ in range(2):
        frame = worker.expect_type("triggerregistrationresult")
        refusals[frame["id"]] = frame["error"]
    assert refusals["h1"] == {
        "code": "trigger_registration_failed",
        "message": "api_path is required for http triggers",
    }
    assert refusals["c1"]["code"] == "trigger_registration_failed"
    assert refusals["c1"]["message"].startswith("Invalid cron expression")


def test_the_in_process_call_path_routes_with_metadata(connect, engine):
    from iii_sync.engine import CallFailed

    worker = connect()
    worker.register_function("svc::f")
    worker.announce(name="svc", namespace="orders")
    results = []
    caller = threading.Thread(
        target=lambda: results.append(
            engine.call(
                "svc::f", {"a": 1}, namespace="orders", metadata={"m": 1}, timeout=10
            )
        ),
        name="test-in-process-caller",
    )
    caller.start()
    fired = worker.expect_invoke("svc::f")
    assert fired["data"] == {"a": 1} and fired["metadata"] == {"m": 1}
    worker.answer(fired, "done")
    caller.join(10)
    assert results == ["done"]

    with pytest.raises(CallFailed) as info:
        engine.call("svc::f", {})
    assert info.value.message == "Function svc::f not found in namespace default"
    assert engine.call("state::set", {"scope": "s", "key": "k", "value": 1}) == {
        "old_value": None,
        "new_value": 1,
    }
