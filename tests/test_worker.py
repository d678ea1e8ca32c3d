"""The public Worker: lifecycle, registration frames, metadata, signals, gevent."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from worker_support import wait_until

import iii_sync
from iii_sync import ConnectionState

HERE = os.path.dirname(os.path.abspath(__file__))


def test_metadata_announce_carries_identity(stub, make_worker, monkeypatch):
    monkeypatch.setenv("III_WORKER_NAME", "billing-worker")
    monkeypatch.setenv("III_NAMESPACE", "")
    worker = make_worker(stub.url, name=None, description="bills")
    announce = stub.next_connection().next_frame()
    assert announce["function_id"] == "engine::workers::register"
    assert "namespace" not in announce
    data = announce["data"]
    assert data["name"] == "billing-worker" == worker.name
    assert data["runtime"] == "python" and data["pid"] == os.getpid()
    assert data["version"] == iii_sync.__version__
    assert data["description"] == "bills"
    assert "namespace" not in data


def test_namespace_goes_into_the_announce(stub, make_worker):
    make_worker(stub.url, namespace="orders", name="wörker-名")
    data = stub.next_connection().next_frame()["data"]
    assert data["namespace"] == "orders"
    assert data["name"] == "wörker-名"


def test_blank_namespace_refused_before_any_connection(stub):
    with pytest.raises(ValueError):
        iii_sync.register_worker(stub.url, namespace="  ")
    assert stub.connections == []


def test_register_and_unregister_send_frames(stub, make_worker):
    worker = make_worker(stub.url)
    connection = stub.next_connection()

    @worker.function("math::add", description="adds", metadata={"v": 1})
    def add(data):
        return data["a"] + data["b"]

    frame = connection.next_frame("registerfunction")
    assert frame == {
        "type": "registerfunction",
        "id": "math::add",
        "description": "adds",
        "metadata": {"v": 1},
    }
    trigger = worker.register_trigger(
        "cron", "math::add", {"expression": "* * * * * *"}
    )
    assert connection.next_frame("registertrigger")["id"] == trigger.id

    trigger.unregister()
    assert connection.next_frame("unregistertrigger") == {
        "type": "unregistertrigger",
        "id": trigger.id,
        "trigger_type": "cron",
    }
    worker._registrations.function("math::add").unregister()
    assert connection.next_frame("unregisterfunction")["id"] == "math::add"
    with pytest.raises(ValueError):
        worker.register_function("dup::x", add)
        worker.register_function("dup::x", add)
    with pytest.raises(ValueError):
        worker.register_function("  ", add)


def test_close_lets_in_flight_handlers_finish_and_send(stub, make_worker):
    worker = make_worker(stub.url)
    connection = stub.next_connection()
    started = threading.Event()

    def slow(data):
        started.set()
        time.sleep(0.3)
        return "finished"

    worker.register_function("t::slow", slow)
    invocation = connection.invoke("t::slow")
    assert started.wait(5)
    worker.close(timeout=5)
    assert connection.result_for(invocation)["result"] == "finished"
    assert wait_until(connection.closed.is_set)
    assert connection.close_code == 1000
    assert worker.state == ConnectionState.CLOSED
    worker.close()


def test_close_returns_within_timeout_despite_stuck_handler(stub, make_worker):
    worker = make_worker(stub.url)
    connection = stub.next_connection()
    stuck = threading.Event()
    worker.register_function("t::stuck", lambda d: stuck.wait(30))
    connection.invoke("t::stuck")
    time.sleep(0.1)
    start = time.monotonic()
    worker.close(timeout=1.0)
    assert time.monotonic() - start < 1.5
    stuck.set()


def test_context_manager_and_state_listener_unsubscribe(stub):
    seen = []
    with iii_sync.register_worker(stub.url, name="cm") as worker:
        unsubscribe = worker.on_state_change(seen.append)
        assert seen == [ConnectionState.CONNECTED]
        unsubscribe()
        unsubscribe()
    assert worker.state == ConnectionState.CLOSED
    assert seen == [ConnectionState.CONNECTED]


def run_script(source, *args, env=None):
    merged = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.path.dirname(HERE)]))
    merged.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source)] + list(args),
        env=merged,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


RUN_FOREVER = """
    import sys, threading, iii_sync
    worker = iii_sync.register_worker(sys.argv[1], name="signals")
    worker.register_function("t::stuck", lambda d: threading.Event().wait(60))
    print("ready", flush=True)
    worker.run_forever(close_timeout=float(sys.argv[2]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_with_stuck_handler_exits_within_grace(stub):
    process = run_script(RUN_FOREVER, stub.url, "1.5")
    try:
        assert process.stdout.readline().strip() == "ready"
        connection = stub.next_connection()
        connection.invoke("t::stuck")
        time.sleep(0.2)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 143
        assert time.monotonic() - start < 3.5
        assert wait_until(connection.closed.is_set)
    finally:
        process.kill()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_second_signal_exits_at_once(stub):
    process = run_script(RUN_FOREVER, stub.url, "30")
    try:
        assert process.stdout.readline().strip() == "ready"
        stub.next_connection().invoke("t::stuck")
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 143
        assert time.monotonic() - start < 2
    finally:
        process.kill()


GEVENT_SCRIPT = """
    from gevent import monkey; monkey.patch_all()
    import sys, time, gevent, iii_sync
    from stub_engine import StubEngine

    stub = StubEngine()
    def route(connection, frame):
        if frame.get("type") == "invokefunction" and frame["function_id"] == "t::slow":
            def later():
                gevent.sleep(float(frame["data"]))
                connection.send({"type": "invocationresult", "function_id": "t::slow",
                                 "invocation_id": frame["invocation_id"], "result": 1})
            gevent.spawn(later)
    stub.on_frame = route
    worker = iii_sync.register_worker(stub.url, name="green", concurrency="gevent")
    ticks = [0]
    def ticker():
        while True:
            gevent.sleep(0.01)
            ticks[0] += 1
    gevent.spawn(ticker)
    calls = [gevent.spawn(worker.trigger, "t::slow", 0.05) for _ in range(200)]
    long_call = gevent.spawn(worker.trigger, "t::slow", 1.0)
    before = ticks[0]
    gevent.joinall(calls + [long_call], timeout=20, raise_error=True)
    assert all(c.value == 1 for c in calls + [long_call])
    worker.close(5)
    print("ok", ticks[0] - before, flush=True)
"""


def test_gevent_mode_keeps_the_hub_free():
    pytest.importorskip("gevent")
    process = run_script(GEVENT_SCRIPT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("ok"), output
    assert int(last.split()[1]) >= 80


def test_gevent_mode_without_patching_is_refused():
    process = run_script("""
        import iii_sync
        try:
            iii_sync.Worker("ws://127.0.0.1:1", concurrency="gevent")
        except ValueError as exc:
            print("refused:", exc)
    """)
    output, _ = process.communicate(timeout=30)
    assert "refused: concurrency='gevent' needs gevent.monkey.patch_all()" in output


def test_token_reaches_the_handshake_but_never_the_logs(
    stub, make_worker, monkeypatch, caplog
):
    monkeypatch.setenv("III_TOKEN", "s3cret-token")
    caplog.set_level("DEBUG", logger="iii_sync")
    make_worker(stub.url)
    connection = stub.next_connection()
    assert connection.headers["authorization"] == "Bearer s3cret-token"
    assert "<redacted>" in caplog.text
    assert "s3cret-token" not in caplog.text
