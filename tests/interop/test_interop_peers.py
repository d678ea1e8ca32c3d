"""The official Python and Node SDKs as peers of iii_sync, through LocalEngine.

Each test runs once per official SDK (the ``runtime`` fixture): the official
worker in a subprocess and an iii_sync worker in this process, both on one
embedded engine. Calls cross in both directions, errors keep their codes,
the engine's ``http`` trigger reaches the official worker, and
``engine::workers::list`` reports the official worker as the registry holds
it. The conftest fails each test in which the engine logged a warning.
"""

import json
import os

import pytest
from interop_setup import next_note
from interop_support import (
    PEER_FUNCTIONS,
    PEER_PREFIX,
    SYNC_FUNCTIONS,
    SYNC_PREFIX,
    http_request,
    worker_row,
)

import iii_sync

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]


def peer_worker_id(peer):
    reply = peer.request("state")
    assert reply["state"] == "connected", reply
    assert reply["worker_id"], reply
    return reply["worker_id"]


def official_version(runtime):
    """The installed official SDK's version, as it announces it."""
    if runtime == "python":
        from importlib.metadata import version

        return version("iii-sdk")
    path = os.path.join(os.environ["III_TEST_NODE_MODULES"], "iii-sdk", "package.json")
    with open(path) as manifest:
        return json.load(manifest)["version"]


# Calls in both directions


def test_iii_sync_calls_the_official_worker(runtime, peer, sync_worker):
    result = sync_worker.trigger(PEER_PREFIX[runtime] + "echo", {"n": 1, "s": "é"})

    assert result["runtime"] == runtime
    # The engine stamps the caller's id into object payloads (§4.5).
    assert result["echo"] == {
        "n": 1,
        "s": "é",
        "_caller_worker_id": sync_worker.worker_id,
    }


def test_official_worker_calls_iii_sync(runtime, peer, sync_worker):
    reply = peer.call(SYNC_PREFIX + "echo", {"n": 2, "list": [1, None, True]})

    assert reply["ok"], reply
    result = reply["result"]
    assert result["runtime"] == "iii_sync"
    assert result["echo"]["n"] == 2
    assert result["echo"]["list"] == [1, None, True]
    assert result["caller"] == peer_worker_id(peer)


def test_metadata_crosses_both_ways(runtime, peer, sync_worker):
    to_official = sync_worker.trigger(
        PEER_PREFIX[runtime] + "echo", {}, metadata={"from": "iii_sync", "n": 1}
    )
    reply = peer.call(SYNC_PREFIX + "echo", {}, metadata={"from": runtime, "n": 2})

    assert to_official["metadata"] == {"from": "iii_sync", "n": 1}
    assert reply["ok"], reply
    assert reply["result"]["metadata"] == {"from": runtime, "n": 2}


def test_fire_and_forget_crosses_both_ways(runtime, peer, sync_worker):
    sync_worker.trigger_void(PEER_PREFIX[runtime] + "note", {"tag": "to-official"})
    reply = peer.call(SYNC_PREFIX + "note", {"tag": f"from-{runtime}"}, void=True)

    noted = peer.next_event("noted", timeout=10.0)
    assert noted["data"]["tag"] == "to-official"
    assert reply == {"id": reply["id"], "ok": True, "result": None}
    assert next_note(f"from-{runtime}", timeout=10.0)["tag"] == f"from-{runtime}"


def test_large_payloads_cross_both_ways(runtime, peer, sync_worker):
    # Over the 1 MiB that websockets clients accept by default.
    text = "iii-" * (384 * 1024)

    result = sync_worker.trigger(PEER_PREFIX[runtime] + "echo", {"text": text})
    reply = peer.call(SYNC_PREFIX + "echo", {"text": text})

    assert result["echo"]["text"] == text
    assert reply["ok"], reply
    assert reply["result"]["echo"]["text"] == text


def test_many_calls_interleave(runtime, peer, sync_worker):
    futures = [
        sync_worker.trigger_async(PEER_PREFIX[runtime] + "echo", {"i": i})
        for i in range(20)
    ]

    echoed = [future.result(20)["echo"]["i"] for future in futures]
    assert echoed == list(range(20))


# Errors cross with their codes


def test_official_failure_reaches_iii_sync_as_invocation_failed(
    runtime, peer, sync_worker
):
    with pytest.raises(iii_sync.InvocationError) as caught:
        sync_worker.trigger(PEER_PREFIX[runtime] + "fail", {"why": "test-a"})

    error = caught.value
    assert error.code == "invocation_failed"
    assert error.message == f"{runtime} peer failed on purpose: test-a"
    assert error.stacktrace and "failed on purpose" in error.stacktrace


def test_iii_sync_custom_code_reaches_the_official_caller(runtime, peer, sync_worker):
    reply = peer.call(SYNC_PREFIX + "custom", {"why": "test-b"})

    assert not reply["ok"], reply
    assert reply["code"] == "interop_custom"
    assert reply["message"] == "iii_sync refused on purpose: test-b"


def test_iii_sync_crash_reaches_the_official_caller_as_invocation_failed(
    runtime, peer, sync_worker
):
    reply = peer.call(SYNC_PREFIX + "crash", {"why": "test-c"})

    assert not reply["ok"], reply
    assert reply["code"] == "invocation_failed"
    # iii_sync puts the exception type in front; the official SDKs do not.
    assert reply["message"].endswith("iii_sync crashed on purpose: test-c")
    assert "RuntimeError" in (reply["stacktrace"] or "")


def test_engine_function_not_found_reaches_both(runtime, peer, sync_worker):
    expected = "Function interop::missing not found in namespace default."

    with pytest.raises(iii_sync.InvocationError) as caught:
        sync_worker.trigger("interop::missing", {})
    reply = peer.call("interop::missing", {})

    assert (caught.value.code, caught.value.message) == ("function_not_found", expected)
    assert not reply["ok"], reply
    assert (reply["code"], reply["message"]) == ("function_not_found", expected)


def test_official_worker_calls_engine_builtins(runtime, peer, sync_worker):
    reply = peer.call("engine::functions::list", {"prefix": "interop::sync::"})

    assert reply["ok"], reply
    listed = sorted(row["function_id"] for row in reply["result"]["functions"])
    assert listed == [SYNC_PREFIX + name for name in SYNC_FUNCTIONS]


# The engine's http trigger reaches the official worker


def test_http_request_reaches_the_official_function(runtime, peer, engine):
    url = f"{engine.http_url}/interop/{runtime}/item-7?colour=blue"
    status, headers, body = http_request(url, {"hello": "world"})

    assert status == 201, body
    assert headers.get("x-interop-runtime") == runtime
    assert body["runtime"] == runtime
    assert body["method"] == "POST"
    assert body["path"].lstrip("/") == f"interop/{runtime}/:item"
    assert body["path_params"] == {"item": "item-7"}
    assert body["query_params"] == {"colour": "blue"}
    # HTTP-fired calls carry no caller id (§4.5).
    assert body["received"] == {"hello": "world"}


def test_http_route_of_the_official_worker_is_bound_to_it(runtime, peer, engine):
    function_id = PEER_PREFIX[runtime] + "http"
    routes = [t for t in engine.triggers() if t.function_id == function_id]

    assert len(routes) == 1, routes
    assert routes[0].trigger_type == "http"
    assert routes[0].namespace == "default"
    assert routes[0].owner == peer_worker_id(peer)


# engine::workers::list shows the official worker as the registry holds it


def test_workers_list_shows_the_official_worker(runtime, peer, sync_worker, engine):
    peer_id = peer_worker_id(peer)

    rows = sync_worker.trigger("engine::workers::list", {})["workers"]
    row = worker_row(rows, peer_id)
    held = {view.id: view for view in engine.workers()}[peer_id]

    assert row["runtime"] == runtime
    assert row["name"] == peer.name == held.name
    assert row["version"] == official_version(runtime)
    assert row["status"] == "connected"
    assert row["namespace"] == "default" == held.namespace
    expected = sorted(PEER_PREFIX[runtime] + name for name in PEER_FUNCTIONS)
    assert held.function_ids == expected
    assert row["function_count"] == len(held.function_ids) == len(PEER_FUNCTIONS)


def test_workers_list_filters_by_runtime(runtime, peer, sync_worker, engine):
    rows = sync_worker.trigger("engine::workers::list", {"runtime": runtime})["workers"]

    # iii_sync announces itself as a python worker too.
    held = [v.name for v in engine.workers() if v.details.get("runtime") == runtime]
    assert peer.name in held
    assert sorted(row["name"] for row in rows) == sorted(held)
