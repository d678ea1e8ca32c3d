"""Official SDK workers and iii_sync around the edges of a connection.

* With OpenTelemetry on, each official SDK opens a second socket on
  ``/otel`` and streams binary ``OTLP``/``LOGS``/``MTRC`` frames. The engine
  must take them quietly: no worker for that socket, no warning, and calls on
  the main socket unaffected.
* A worker name held by one SDK is refused to the other with
  ``WORKER_NAMESPACE_CONFLICT``, and the holder keeps serving.
* A worker in a namespace is reached only through that namespace.
* A worker that goes away mid-call leaves its caller with
  ``invocation_stopped``, whichever SDK either side uses.

Each test starts its own engine (``cast``), so it can stop it; the conftest
fails each test in which the engine logged a warning.
"""

import threading

import pytest
from interop_setup import HANGING, RELEASE, assert_calls_cross
from interop_support import (
    PEER_PREFIX,
    SYNC_PREFIX,
    http_request,
    wait_until,
    worker_row,
)

import iii_sync
import iii_sync.engine._engine as engine_module

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

TELEMETRY_TIMEOUT = 20.0
# How long the engine may take to notice a refusal or a departure.
SETTLE_TIMEOUT = 15.0


class TelemetryTap:
    """Wraps the engine's ``/otel`` session to see what reaches it."""

    def __init__(self, serve):
        self._serve = serve
        # Guards tags and connections: engine threads write, the test reads.
        self._tags_lock = threading.Lock()
        self.tags = []
        self.connections = 0
        self.arrived = threading.Event()

    def __call__(self, connection):
        with self._tags_lock:
            self.connections += 1
        receive = connection.recv

        def recv(*args, **kwargs):
            message = receive(*args, **kwargs)
            with self._tags_lock:
                self.tags.append(message[:4] if isinstance(message, bytes) else "text")
            self.arrived.set()
            return message

        connection.recv = recv
        self._serve(connection)


@pytest.fixture
def telemetry_tap(monkeypatch):
    """Taps the ``/otel`` sessions of engines created during the test."""
    tap = TelemetryTap(engine_module.serve_telemetry)
    monkeypatch.setattr(engine_module, "serve_telemetry", tap)
    return tap


def test_telemetry_socket_is_swallowed(runtime, telemetry_tap, cast):
    engine = cast.start_engine()
    peer = cast.start_peer(runtime, engine, name=f"interop-{runtime}-otel", otel=True)
    sync_worker = cast.start_sync_worker(engine.url)

    assert_calls_cross(runtime, peer, sync_worker, "otel")
    assert telemetry_tap.arrived.wait(TELEMETRY_TIMEOUT), (
        "no telemetry frame reached /otel\n" + peer.diagnostics()
    )

    assert telemetry_tap.connections >= 1
    assert set(telemetry_tap.tags) <= {b"OTLP", b"LOGS", b"MTRC"}
    # The telemetry socket is no worker: only the two real ones are listed.
    names = sorted(view.name for view in engine.workers())
    assert names == sorted([peer.name, sync_worker.name])
    assert_calls_cross(runtime, peer, sync_worker, "after-otel")


# Worker names: one live worker per name, whichever SDK holds it


NAME_TAKEN = r"refused: name .* is held by"


def test_iii_sync_is_refused_a_name_an_official_worker_holds(runtime, engine_log, cast):
    engine = cast.start_engine()
    peer = cast.start_peer(runtime, engine)
    holder = peer.request("state")["worker_id"]
    engine_log.allow(NAME_TAKEN)

    with pytest.raises(iii_sync.RegistrationRejectedError) as caught:
        iii_sync.register_worker(engine.url, name=peer.name, connect_timeout=10.0)

    refused = caught.value
    assert refused.code == "WORKER_NAMESPACE_CONFLICT"
    assert (refused.worker_name, refused.owner_worker_id) == (peer.name, holder)
    # The holder goes on serving.
    sync_worker = cast.start_sync_worker(engine.url)
    assert_calls_cross(runtime, peer, sync_worker, "after-refusal")


def test_official_python_worker_is_refused_a_name_iii_sync_holds(
    python_runtime, engine_log, cast
):
    # Node SDK 0.22 has no handling for registrationrejected, so only the
    # Python SDK is asked to give up.
    engine = cast.start_engine()
    sync_worker = cast.start_sync_worker(engine.url)
    engine_log.allow(NAME_TAKEN)

    peer = cast.start_bare_peer("python", engine.url, sync_worker.name)
    code = peer.ready.get("rejected")
    if code is None:
        wait_until(
            lambda: peer.request("state")["state"] == "failed",
            SETTLE_TIMEOUT,
            "the refused Python worker to fail",
        )
        code = peer.call(SYNC_PREFIX + "echo", {})["code"]

    assert code == "WORKER_NAMESPACE_CONFLICT"
    wait_until(
        lambda: [view.name for view in engine.workers()] == [sync_worker.name],
        SETTLE_TIMEOUT,
        "the refused connection to go",
    )
    prefix = PEER_PREFIX["python"]
    assert not [f for _, f in engine.functions() if f.startswith(prefix)]
    assert sync_worker.trigger(SYNC_PREFIX + "echo", {"k": 1})["echo"]["k"] == 1


# Namespaces: routing is strict, the official worker keeps to its own


def test_official_python_worker_in_a_namespace(python_runtime, cast):
    # Node SDK 0.22 has no namespace option, so only the Python SDK is used.
    namespace = "interop-ns"
    engine = cast.start_engine()
    peer = cast.start_peer("python", engine, namespace=namespace)
    sync_worker = cast.start_sync_worker(engine.url)
    echo = PEER_PREFIX["python"] + "echo"

    with pytest.raises(iii_sync.InvocationError) as caught:
        sync_worker.trigger(echo, {})
    found = sync_worker.trigger(echo, {"n": 1}, namespace=namespace)

    assert (caught.value.code, caught.value.message) == (
        "function_not_found",
        f"Function {echo} not found in namespace default. "
        f"It is registered in namespace(s): {namespace}.",
    )
    assert found["echo"]["n"] == 1

    # The official worker calls into its own namespace unless told not to.
    missed = peer.call(SYNC_PREFIX + "echo", {})
    reached = peer.call(SYNC_PREFIX + "echo", {"n": 2}, namespace="default")

    assert (missed["code"], missed["message"]) == (
        "function_not_found",
        f"Function {SYNC_PREFIX}echo not found in namespace {namespace}. "
        "It is registered in namespace(s): default.",
    )
    assert reached["ok"], reached
    assert reached["result"]["echo"]["n"] == 2

    # Its http route fires its function in its namespace.
    status, _, body = http_request(f"{engine.http_url}/interop/python/ns", {})
    assert status == 201, body
    rows = sync_worker.trigger("engine::workers::list", {})["workers"]
    row = worker_row(rows, peer.request("state")["worker_id"])
    assert row["namespace"] == namespace


# A worker that goes away with a call in flight: the caller hears of it


def test_a_crashed_official_worker_stops_the_calls_it_was_running(runtime, cast):
    engine = cast.start_engine()
    peer = cast.start_peer(runtime, engine)
    sync_worker = cast.start_sync_worker(engine.url)
    call = sync_worker.trigger_async(
        PEER_PREFIX[runtime] + "hang", {"seconds": 30}, timeout=30.0
    )
    wait_until(
        lambda: in_flight(engine, peer.name) == 1,
        SETTLE_TIMEOUT,
        "the call to reach the official worker",
    )

    peer.kill()

    with pytest.raises(iii_sync.InvocationError) as caught:
        call.result(SETTLE_TIMEOUT)
    assert (caught.value.code, caught.value.message) == (
        "invocation_stopped",
        "Invocation stopped",
    )


def test_a_closed_iii_sync_worker_stops_the_official_callers_call(runtime, cast):
    engine = cast.start_engine()
    peer = cast.start_peer(runtime, engine)
    sync_worker = cast.start_sync_worker(engine.url)
    RELEASE.clear()
    cast.on_exit(RELEASE.set)
    replies = []
    caller = threading.Thread(
        target=lambda: replies.append(
            peer.call(SYNC_PREFIX + "hang", {"seconds": 30}, timeout_ms=30000)
        ),
        name="interop-official-caller",
        daemon=True,
    )
    caller.start()
    assert HANGING.get(timeout=SETTLE_TIMEOUT)["seconds"] == 30

    # The handler is still running when the socket goes.
    sync_worker.close(timeout=0.5)

    caller.join(SETTLE_TIMEOUT)
    assert replies, "the official caller got no answer"
    assert (replies[0]["code"], replies[0]["message"]) == (
        "invocation_stopped",
        "Invocation stopped",
    )


def in_flight(engine, name):
    """The engine's count of calls the worker called ``name`` is running."""
    views = [view for view in engine.workers() if view.name == name]
    return views[0].active_invocations if views else -1
