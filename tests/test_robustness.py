"""Regression tests from an adversarial review of the worker client.

Each test pins one kind of fault: bad values at the edges, calls from the
wrong thread, fork, descriptor limits, oversized messages, shutdown races.
"""

import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from stub_engine import TEXT
from worker_support import FAST, wait_until

import iii_sync
from iii_sync import (
    Backoff,
    BlockingCallError,
    ConnectionState,
    FrameValidationError,
    WorkerClosedError,
)

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"description": 123},
        {"metadata": {"x": float("nan")}},
        {"metadata": {"x": {1, 2}}},
        {"metadata": {"x": "\ud800"}},
    ],
)
def test_unsendable_registration_raises_and_is_not_kept(stub, make_worker, kwargs):
    worker = make_worker(stub.url)
    with pytest.raises(FrameValidationError):
        worker.register_function("bad::f", lambda d: d, **kwargs)
    assert worker._registrations.function("bad::f") is None

    # The worker still reconnects and replays what it has.
    worker.register_function("good::f", lambda d: "ok")
    stub.next_connection().drop()
    second = stub.next_connection()
    assert second.next_frame("registerfunction")["id"] == "good::f"
    assert worker.wait_until_connected(5)


def test_unsendable_registration_before_connecting_raises_at_once():
    worker = iii_sync.Worker("ws://127.0.0.1:9", name="offline-bad")
    with pytest.raises(FrameValidationError):
        worker.register_trigger("cron", "f", {"at": float("inf")})
    worker.close(1)


def test_deeply_nested_inbound_frame_is_dropped(stub, make_worker, caplog):
    worker = make_worker(stub.url)
    connection = stub.next_connection()
    worker.register_function("t::ok", lambda d: "fine")
    deep = '{"type":"invokefunction","function_id":"t::ok","data":%s}' % (
        "[" * 5000 + "]" * 5000
    )
    connection.send_raw(deep.encode(), TEXT)
    assert connection.result_for(connection.invoke("t::ok"))["result"] == "fine"
    assert "deeper than" in caplog.text


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "handler, code",
    [
        (lambda d: nested(3000), "result_not_serializable"),
        (lambda d: nested(200), "result_not_serializable"),
        (lambda d: {"name": "caf\udce9"}, "result_not_serializable"),
    ],
)
def test_unsendable_results_still_answer(stub, make_worker, handler, code):
    worker = make_worker(stub.url)
    connection = stub.next_connection()
    worker.register_function("t::bad", handler)
    reply = connection.result_for(connection.invoke("t::bad"))
    assert reply["error"]["code"] == code


def test_exception_whose_str_raises_still_answers(stub, make_worker):
    class WeirdError(Exception):
        def __str__(self):
            raise RuntimeError("no text")

    def handler(data):
        raise WeirdError()

    worker = make_worker(stub.url)
    connection = stub.next_connection()
    worker.register_function("t::weird", handler)
    error = connection.result_for(connection.invoke("t::weird"))["error"]
    assert error == {
        "code": "invocation_failed",
        "message": "WeirdError",
        "stacktrace": error["stacktrace"],
    }


def test_close_from_a_state_listener_returns(stub):
    worker = iii_sync.Worker(stub.url, name="listener-close", **FAST)
    closed = threading.Event()

    def listener(state):
        if state == ConnectionState.CONNECTED:
            worker.close(2)
            closed.set()

    worker.on_state_change(listener)
    worker.start()
    assert closed.wait(5)
    assert worker.state == ConnectionState.CLOSED
    assert wait_until(
        lambda: (
            not [
                t
                for t in threading.enumerate()
                if t.name == "iii-connection-listener-close"
            ]
        )
    )


def test_close_from_inside_a_handler(stub, make_worker):
    worker = make_worker(stub.url)
    connection = stub.next_connection()
    done = threading.Event()

    def handler(data):
        worker.close(2)
        done.set()
        return "bye"

    worker.register_function("t::quit", handler)
    connection.invoke("t::quit")
    assert done.wait(5)
    assert worker.state == ConnectionState.CLOSED
    assert wait_until(
        lambda: (
            not [
                t
                for t in threading.enumerate()
                if t.name.startswith("iii-connection-test")
            ]
        )
    )


def test_blocking_trigger_from_the_connection_thread_is_refused(stub):
    worker = iii_sync.Worker(stub.url, name="listener-trigger", **FAST)
    outcome = []

    def listener(state):
        if state == ConnectionState.CONNECTED:
            start = time.monotonic()
            try:
                worker.trigger("x::y", timeout=4)
            except BlockingCallError as exc:
                outcome.append((exc, time.monotonic() - start))

    worker.on_state_change(listener)
    worker.start()
    try:
        assert wait_until(lambda: outcome, 5)
        assert outcome[0][1] < 0.5
        assert worker.trigger_async("x::y", timeout=1) is not None
    finally:
        worker.close(2)


FORK_SCRIPT = """
    import os, sys, iii_sync
    worker = iii_sync.register_worker(sys.argv[1], name="forked")
    pid = os.fork()
    if pid == 0:
        try:
            worker.trigger("x::y", timeout=3)
            print("child: no error", flush=True)
        except iii_sync.WorkerClosedError as exc:
            print("child: refused:", "before a fork" in str(exc), flush=True)
        worker.close(1)
        os._exit(0)
    os.waitpid(pid, 0)
    print("parent:", worker.state.value)
    worker.close(2)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_worker_is_not_usable_across_fork(stub):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(FORK_SCRIPT), stub.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "child: refused: True" in done.stdout, done.stdout + done.stderr
    assert "parent: connected" in done.stdout
    assert stub.connections[0].close_code == 1000  # only the parent closed it


MANY_FDS_SCRIPT = """
    import os, resource, sys, iii_sync
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    pipes = [os.pipe() for _ in range(700)]
    worker = iii_sync.register_worker(sys.argv[1], name="many-fds",
                                      connect_timeout=5)
    print(worker.state.value, worker._connection.transport._ws.sock.fileno() > 1024)
    worker.close(2)
"""


def test_sockets_above_descriptor_1024_work(stub):
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2048:
        pytest.skip("hard descriptor limit below 2048")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MANY_FDS_SCRIPT), stub.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.strip() == "connected True", done.stdout + done.stderr


def test_waits_on_other_workers_keep_the_thread_count_bounded(stub, make_worker):
    worker = make_worker(stub.url, max_workers=2, max_queued=100)
    connection = stub.next_connection()
    release = threading.Event()
    baseline = threading.active_count()

    def handler(data):
        try:
            worker.trigger("remote::slow", timeout=10)
        except iii_sync.IIIError:
            pass
        return "done"

    worker.register_function("t::waits", handler)
    ids = [connection.invoke("t::waits") for _ in range(30)]
    assert wait_until(
        lambda: (
            sum(
                1 for f in connection.received if f.get("function_id") == "remote::slow"
            )
            >= 2
        ),
        5,
    )
    time.sleep(0.3)
    assert threading.active_count() <= baseline + 2
    release.set()
    worker.close(1)
    del ids


def test_messages_over_16_mib_go_out_in_fragments(stub, make_worker):
    worker = make_worker(stub.url)
    connection = stub.next_connection()
    big = "x" * (20 * 1024 * 1024)
    worker.register_function("t::big", lambda d: big)
    reply = connection.result_for(connection.invoke("t::big"), timeout=30)
    assert len(reply["result"]) == len(big)
    assert 0 < connection.max_frame_size <= 16 * 1024 * 1024


def test_close_during_a_handshake_that_never_ends():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = "ws://127.0.0.1:%d" % listener.getsockname()[1]
    worker = iii_sync.Worker(url, name="stuck-handshake", handshake_timeout=30)
    worker.start()
    try:
        accepted, _ = listener.accept()  # reads the request, then says nothing
        accepted.settimeout(5)
        assert accepted.recv(4096).startswith(b"GET ")
        start = time.monotonic()
        worker.close(1.0)
        assert time.monotonic() - start < 1.5
        assert wait_until(
            lambda: (
                not [
                    t
                    for t in threading.enumerate()
                    if t.name == "iii-connection-stuck-handshake"
                ]
            ),
            1.0,
        )
        accepted.close()
    finally:
        listener.close()


@pytest.mark.parametrize("timeout", [math.inf, math.nan, -1, 0, 1e12])
def test_unusable_timeouts_raise_before_sending(stub, make_worker, timeout):
    worker = make_worker(stub.url)
    with pytest.raises(ValueError):
        worker.trigger("x::y", timeout=timeout)
    assert len(worker._pending) == 0


@pytest.mark.parametrize(
    "option", ["ping_timeout", "handshake_timeout", "invocation_timeout"]
)
def test_unusable_timing_options_raise(option):
    with pytest.raises(ValueError):
        iii_sync.Worker("ws://127.0.0.1:9", **{option: math.inf})


def test_infinite_backoff_raises():
    with pytest.raises(ValueError):
        Backoff(maximum=math.inf)


@pytest.mark.parametrize("payload", ["\ud800", {"a": ["\udfff"]}])
def test_surrogate_payload_raises_before_anything_is_pending(
    stub, make_worker, payload
):
    worker = make_worker(stub.url)
    with pytest.raises(FrameValidationError):
        worker.trigger("x::y", payload)
    assert len(worker._pending) == 0


def test_worker_closed_error_after_close(stub, make_worker):
    worker = make_worker(stub.url)
    worker.close(1)
    with pytest.raises(WorkerClosedError):
        worker.trigger_void("x::y")
    assert str(uuid.uuid4())


def test_registration_over_the_message_limit_raises(stub, make_worker):
    worker = make_worker(stub.url, max_message_size=10_000)
    with pytest.raises(FrameValidationError, match="limit"):
        worker.register_function("big::f", lambda d: d, metadata={"x": "y" * 20_000})
    assert worker._registrations.function("big::f") is None


FORK_UNREGISTER_SCRIPT = """
    import os, sys, iii_sync
    worker = iii_sync.register_worker(sys.argv[1], name="fork-unregister")
    ref = worker.register_function("p::f", lambda d: d)
    pid = os.fork()
    if pid == 0:
        try:
            ref.unregister()
            print("child: unregistered", flush=True)
        except iii_sync.WorkerClosedError:
            print("child: refused", worker.state.value, flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    worker.close(2)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_unregister_in_a_forked_child_is_refused(stub):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            textwrap.dedent(FORK_UNREGISTER_SCRIPT),
            stub.url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "child: refused closed" in done.stdout, done.stdout + done.stderr
    assert not [
        f for f in stub.connections[0].received if f.get("type") == "unregisterfunction"
    ]


def test_close_from_a_future_callback_on_the_deadline_thread(stub, make_worker):
    worker = make_worker(stub.url)
    outcome = []
    future = worker.trigger_async("nobody::home", timeout=0.2)
    future.add_done_callback(lambda f: outcome.append(worker.close(2)))
    assert wait_until(lambda: outcome, 5)
    assert worker.state == ConnectionState.CLOSED


def test_system_exit_in_a_listener_is_contained(stub, make_worker, caplog):
    worker = make_worker(stub.url)
    seen = []

    def bad(state):
        if state == ConnectionState.RECONNECTING:
            raise SystemExit(1)

    worker.on_state_change(bad)
    worker.on_state_change(seen.append)
    stub.next_connection().drop()
    stub.next_connection()
    assert wait_until(lambda: seen[-1:] == [ConnectionState.CONNECTED], 5)
    assert ConnectionState.RECONNECTING in seen
    assert "listener" in caplog.text


def test_system_exit_in_a_future_callback_is_contained(stub, make_worker):
    worker = make_worker(stub.url)
    first = worker.trigger_async("nobody::home", timeout=0.1)
    first.add_done_callback(lambda f: sys.exit(1))
    with pytest.raises(iii_sync.InvocationTimeoutError):
        first.result(5)
    second = worker.trigger_async("nobody::home", timeout=0.2)
    with pytest.raises(iii_sync.InvocationTimeoutError):
        second.result(5)
    assert len(worker._pending) == 0


def test_close_from_a_handler_while_another_close_runs(stub, make_worker):
    worker = make_worker(stub.url)
    connection = stub.next_connection()
    started, release = threading.Event(), threading.Event()

    def handler(data):
        started.set()
        release.wait(5)
        worker.close(5)
        return "done"

    worker.register_function("t::closes", handler)
    invocation = connection.invoke("t::closes")
    assert started.wait(5)
    closer = threading.Thread(target=worker.close, args=(6,))
    start = time.monotonic()
    closer.start()
    time.sleep(0.1)
    release.set()
    closer.join(10)
    assert time.monotonic() - start < 2.0
    assert connection.result_for(invocation)["result"] == "done"


@pytest.mark.parametrize("value", [10**400, -(10**309)])
def test_integers_beyond_a_double_are_refused(stub, make_worker, value):
    worker = make_worker(stub.url)
    connection = stub.next_connection()
    with pytest.raises(FrameValidationError):
        worker.trigger("x::y", {"n": value})
    worker.register_function("t::huge", lambda d: value)
    reply = connection.result_for(connection.invoke("t::huge"))
    assert reply["error"]["code"] == "result_not_serializable"
    assert worker.trigger_void("x::y", {"n": 10**300}) is None


def test_a_listener_never_runs_twice_at_once(stub, make_worker):
    worker = make_worker(stub.url)
    running, overlaps, seen = [0], [], []
    lock = threading.Lock()

    def slow_listener(state):
        with lock:
            running[0] += 1
            overlaps.append(running[0])
        time.sleep(0.3 if not seen else 0)
        seen.append(state)
        with lock:
            running[0] -= 1

    subscriber = threading.Thread(target=worker.on_state_change, args=(slow_listener,))
    subscriber.start()
    time.sleep(0.05)
    stub.next_connection().drop()
    subscriber.join(5)
    assert wait_until(lambda: seen[-1:] == [ConnectionState.CONNECTED], 5)
    assert max(overlaps) == 1
    assert seen[0] == ConnectionState.CONNECTED
    assert seen[1] == ConnectionState.RECONNECTING


def test_nan_backoff_multiplier_raises():
    with pytest.raises(ValueError):
        Backoff(multiplier=math.nan)
