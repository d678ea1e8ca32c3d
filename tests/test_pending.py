import threading
import time

import pytest

from iii_sync import ConnectionLostError, InvocationError, InvocationTimeoutError
from iii_sync._concurrency import Driver
from iii_sync._pending import PendingInvocations
from iii_sync._protocol import new_id


@pytest.fixture
def pending():
    table = PendingInvocations(Driver())
    table.start("iii-test-deadlines")
    table.open_generation(1)
    yield table
    table.stop(lambda e: ConnectionLostError("stopped"), 5)


def test_result_resolves_and_empties_the_map(pending):
    entry = pending.add("f", 1, 5.0, new_id())
    assert len(pending) == 1
    assert pending.resolve(entry.invocation_id, {"result": {"c": 3}})
    assert entry.future.result(1) == {"c": 3}
    assert len(pending) == 0
    assert not pending.resolve(entry.invocation_id, {"result": 1})


def test_error_wins_over_result(pending):
    entry = pending.add("f", 1, 5.0, new_id())
    pending.resolve(
        entry.invocation_id,
        {"result": 1, "error": {"code": "boom", "message": "no", "stacktrace": "tb"}},
    )
    with pytest.raises(InvocationError) as info:
        entry.future.result(1)
    assert (info.value.code, info.value.message) == ("boom", "no")
    assert info.value.stacktrace == "tb"
    assert info.value.invocation_id == entry.invocation_id
    assert info.value.function_id == "f"


def test_deadline_fires_and_cleans_up(pending):
    start = time.monotonic()
    entry = pending.add("slow", 1, 0.3, new_id())
    with pytest.raises(InvocationTimeoutError) as info:
        entry.future.result(5)
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 1.0
    assert info.value.invocation_id == entry.invocation_id
    assert isinstance(info.value, TimeoutError)
    assert len(pending) == 0
    assert not pending.resolve(entry.invocation_id, {"result": 1})


def test_generation_failure_releases_waiters_at_once(pending):
    entry = pending.add("f", 1, 30.0, new_id())
    failed = pending.fail_generation(1, lambda e: ConnectionLostError("gone"))
    assert failed == 1
    with pytest.raises(ConnectionLostError):
        entry.future.result(1)
    assert len(pending) == 0


def test_add_after_generation_died_raises(pending):
    pending.fail_generation(1, lambda e: ConnectionLostError("gone"))
    with pytest.raises(ConnectionLostError):
        pending.add("f", 1, 1.0, new_id())
    pending.open_generation(2)
    pending.add("f", 2, 1.0, new_id())


def test_cancelled_future_does_not_break_resolution(pending):
    entry = pending.add("f", 1, 5.0, new_id())
    assert entry.future.cancel()
    assert pending.resolve(entry.invocation_id, {"result": 1})
    assert len(pending) == 0


def test_many_timeouts_leave_nothing_behind(pending):
    entries = [pending.add("f", 1, 0.02, new_id()) for _ in range(2000)]
    for entry in entries:
        with pytest.raises(InvocationTimeoutError):
            entry.future.result(5)
    assert len(pending) == 0
    assert len(pending._deadlines) < 2000


def test_callbacks_run_outside_the_lock(pending):
    entry = pending.add("f", 1, 5.0, new_id())
    seen = threading.Event()

    def callback(future):
        # Re-entering the map from a callback must not deadlock.
        pending.add("g", 1, 5.0, new_id())
        seen.set()

    entry.future.add_done_callback(callback)
    pending.resolve(entry.invocation_id, {"result": None})
    assert seen.wait(2)
