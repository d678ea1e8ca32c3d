"""Connection lifecycle against the stub engine: reconnects, liveness, replay."""

import socket
import sys
import threading
import time

import pytest
from stub_engine import StubEngine
from worker_support import iii_threads, wait_until

import iii_sync
from iii_sync import ConnectionState


def announce_first(connection):
    frame = connection.next_frame()
    if frame["type"] == "reattach":
        frame = connection.next_frame()
    assert frame["function_id"] == "engine::workers::register"
    return frame


@pytest.mark.parametrize("code", [1000, 1001, None])
def test_any_close_from_the_engine_leads_to_reconnect_and_replay(
    stub, make_worker, code
):
    worker = make_worker(stub.url)
    worker.register_function("math::add", lambda d: {"c": d["a"] + d["b"]})
    first = stub.next_connection()
    first.next_frame("registerfunction")

    states = []
    worker.on_state_change(states.append)
    first.close(code)
    second = stub.next_connection()
    assert second.next_frame("registerfunction")["id"] == "math::add"
    assert worker.wait_until_connected(5)
    assert ConnectionState.RECONNECTING in states

    invocation = second.invoke("math::add", {"a": 2, "b": 3})
    assert second.result_for(invocation)["result"] == {"c": 5}


def test_reconnect_sends_reattach_with_previous_id_and_token(stub, make_worker):
    worker = make_worker(stub.url)
    first = stub.next_connection()
    assert worker.worker_id == first.worker_id
    first.drop()

    second = stub.next_connection()
    reattach = second.next_frame()
    assert reattach == {
        "type": "reattach",
        "previous_worker_id": first.worker_id,
        "reattach_token": first.token,
    }
    assert second.next_frame()["function_id"] == "engine::workers::register"


def test_registrations_made_offline_go_out_once_per_connection_after_announce():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    worker = iii_sync.Worker(
        "ws://127.0.0.1:%d" % port,
        name="offline",
        reconnect=iii_sync.Backoff(initial=0.05, maximum=0.1),
    )
    worker.start()
    for name in ("a::one", "a::two", "a::three"):
        worker.register_function(name, lambda d: d)
    worker.register_trigger("http", "a::one", {"api_path": "/one"})
    try:
        with StubEngine(port) as stub:
            for _ in range(2):
                connection = stub.next_connection()
                announce_first(connection)
                frames = [connection.next_frame() for _ in range(4)]
                types = [f["type"] for f in frames]
                assert types == ["registerfunction"] * 3 + ["registertrigger"]
                assert sorted(f.get("id") for f in frames[:3]) == [
                    "a::one",
                    "a::three",
                    "a::two",
                ]
                assert worker.wait_until_connected(5)
                connection.drop()
            assert stub.next_connection().next_frame()
    finally:
        worker.close(5)


def test_start_without_engine_reports_true_states():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    states = []
    worker = iii_sync.Worker(
        "ws://127.0.0.1:%d" % port,
        name="late",
        reconnect=iii_sync.Backoff(initial=0.05, maximum=0.1),
    )
    worker.on_state_change(states.append)
    worker.on_state_change(lambda s: 1 / 0)
    worker.start()
    assert not worker.wait_until_connected(0.5)
    assert worker.state == ConnectionState.CONNECTING
    try:
        with StubEngine(port) as stub:
            assert worker.wait_until_connected(5)
            stub.next_connection().drop()
            stub.next_connection()
            assert wait_until(lambda: states.count(ConnectionState.CONNECTED) == 2)
            worker.close(5)
    finally:
        worker.close(5)
    assert states == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.RECONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.CLOSED,
    ]


def test_register_worker_returns_after_connect_timeout_and_keeps_trying(caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    worker = iii_sync.register_worker(
        "ws://127.0.0.1:%d" % port, name="w", connect_timeout=0.3
    )
    try:
        assert time.monotonic() - start < 2
        assert worker.state == ConnectionState.CONNECTING
        assert "still trying" in caplog.text
    finally:
        worker.close(5)


def test_silent_engine_is_detected_and_old_socket_closed_before_new(stub, make_worker):
    stub.answer_pings = False
    worker = make_worker(stub.url, ping_interval=0.2, ping_timeout=0.3)
    first = stub.next_connection()
    announce_first(first)
    start = time.monotonic()

    stub.answer_pings = True
    second = stub.next_connection(timeout=5)
    assert time.monotonic() - start < 2.0
    assert first.pings >= 1
    announce_first(second)
    assert wait_until(first.closed.is_set, 1.0)
    assert worker.wait_until_connected(5)
    assert len(stub.open_connections()) == 1


def test_blackholed_engine_does_not_stop_close(stub, make_worker):
    stub.answer_pings = False
    worker = make_worker(stub.url)
    stub.next_connection()
    start = time.monotonic()
    worker.close(timeout=2)
    assert time.monotonic() - start < 2.5
    assert worker.state == ConnectionState.CLOSED


def test_handshake_refusals_follow_backoff_then_connect(stub, make_worker):
    stub.refuse_handshakes = 3
    worker = make_worker(stub.url, connect_timeout=5)
    assert worker.state == ConnectionState.CONNECTED
    assert len(stub.connections) == 1


def test_max_retries_exhausted_fails_the_worker():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(iii_sync.ConnectionLostError, match="gave up"):
        iii_sync.register_worker(
            "ws://127.0.0.1:%d" % port,
            name="gives-up",
            connect_timeout=3,
            reconnect=iii_sync.Backoff(initial=0.01, max_retries=2),
        )

    worker = iii_sync.Worker(
        "ws://127.0.0.1:%d" % port,
        name="gives-up-2",
        reconnect=iii_sync.Backoff(initial=0.01, max_retries=1),
    )
    worker.start()
    try:
        worker.wait_until_connected(3)
        assert worker.state == ConnectionState.FAILED
        with pytest.raises(iii_sync.ConnectionLostError):
            worker.trigger("x::y", {}, timeout=1)
    finally:
        worker.close(2)


def test_many_connect_close_cycles_return_fast_and_leak_no_threads(stub):
    baseline = len(iii_threads())
    for i in range(300):
        worker = iii_sync.register_worker(
            stub.url, name="cycle-%d" % i, connect_timeout=5
        )
        assert worker.state == ConnectionState.CONNECTED
        start = time.monotonic()
        threading.Thread(target=worker.close, name="closer").start()
        assert worker._closed.wait(1.0)
        assert time.monotonic() - start < 1.0
    assert wait_until(lambda: len(iii_threads()) <= baseline + 1, 5)


def test_reconnects_do_not_grow_threads_or_stack(stub, make_worker):
    worker = make_worker(stub.url, reconnect=iii_sync.Backoff(initial=0, jitter=0))
    depths = []
    for cycle in range(300):
        connection = stub.next_connection()
        announce_first(connection)
        assert worker.wait_until_connected(5)
        if cycle in (10, 299):
            depths.append((len(threading.enumerate()), _stack_depth(worker)))
        connection.drop()
    assert depths[0] == depths[1]
    assert wait_until(lambda: len(stub.connections) == 301)
    assert len(stub.open_connections()) == 1


def _stack_depth(worker):
    thread = next(
        t for t in threading.enumerate() if t.name == "iii-connection-%s" % worker.name
    )
    frame, depth = sys._current_frames()[thread.ident], 0
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


def test_engine_without_announce_answer_is_retried(stub, make_worker, caplog):
    stub.answer_announce = False
    worker = iii_sync.Worker(
        stub.url,
        name="unanswered",
        handshake_timeout=0.3,
        reconnect=iii_sync.Backoff(initial=0.05),
    )
    worker.start()
    try:
        stub.next_connection()
        stub.next_connection(timeout=3)
        assert worker.state != ConnectionState.CONNECTED
        assert "did not acknowledge" in caplog.text
    finally:
        worker.close(3)


def test_two_starts_make_one_connection(stub):
    worker = iii_sync.Worker(stub.url, name="twice")
    threads = [threading.Thread(target=worker.start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    worker.start()
    try:
        assert worker.wait_until_connected(5)
        time.sleep(0.2)  # give a stray second connection time to show up
        assert len(stub.connections) == 1
    finally:
        worker.close(5)


def test_max_retries_counts_connections_the_engine_never_acknowledges(stub):
    stub.answer_announce = False
    worker = iii_sync.Worker(
        stub.url,
        name="silent-peer",
        handshake_timeout=0.2,
        reconnect=iii_sync.Backoff(initial=0.01, max_retries=2),
    )
    worker.start()
    try:
        assert wait_until(lambda: worker.state == ConnectionState.FAILED, 5)
        assert len(stub.connections) == 3
    finally:
        worker.close(2)
