"""Registry tables and the namespace gate (engine-protocol §3.3, §3.4, §5.1)."""

import threading

import pytest
from engine_support import FakeOutbound

from iii_sync.engine._registration import NamespaceGate
from iii_sync.engine._registry import FunctionEntry, Registry, Worker
from iii_sync.engine._scheduler import Scheduler

pytestmark = pytest.mark.timeout(10)


def make_worker(registry):
    worker = Worker(FakeOutbound(), "127.0.0.1")
    registry.add_worker(worker)
    return worker


def test_worker_ids_and_tokens_are_distinct_lowercase_uuids():
    registry = Registry()
    a, b = make_worker(registry), make_worker(registry)
    assert len({a.id, b.id, a.reattach_token, b.reattach_token}) == 4
    assert a.id == a.id.lower() and len(a.id) == 36


def test_name_lease_conflicts_only_with_a_live_holder():
    registry = Registry()
    a, b = make_worker(registry), make_worker(registry)
    assert registry.claim_name(a, "default", "svc") is None
    assert registry.claim_name(a, "default", "svc") is None  # idempotent
    assert registry.claim_name(b, "default", "svc") == a.id
    assert registry.claim_name(b, "other", "svc") is None  # other namespace

    # A holder whose teardown has started loses the lease to a newcomer.
    a.begin_teardown()
    assert registry.claim_name(b, "default", "svc") is None


def test_released_names_can_be_claimed_again():
    registry = Registry()
    a, b = make_worker(registry), make_worker(registry)
    registry.claim_name(a, "default", "svc")
    registry.release_names(a.id)
    assert registry.claim_name(b, "default", "svc") is None


def test_function_ownership_conflict_and_idempotent_reregistration():
    registry = Registry()
    a, b = make_worker(registry), make_worker(registry)
    first = FunctionEntry("default", "svc::f", owner=a.id)
    assert registry.add_function(first) == (None, None)

    conflict, _ = registry.add_function(FunctionEntry("default", "svc::f", owner=b.id))
    assert conflict == a.id
    assert registry.lookup("default", "svc::f") is first

    again = FunctionEntry("default", "svc::f", owner=a.id, description="v2")
    assert registry.add_function(again) == (None, first)
    assert registry.lookup("default", "svc::f") is again


def test_a_worker_function_replaces_a_builtin_in_default():
    registry = Registry()
    worker = make_worker(registry)
    registry.add_builtin("state::get", lambda data: None, "builtin")
    entry = FunctionEntry("default", "state::get", owner=worker.id)
    conflict, previous = registry.add_function(entry)
    assert conflict is None and previous.builtin is not None


def test_only_the_owner_removes_a_function():
    registry = Registry()
    a, b = make_worker(registry), make_worker(registry)
    registry.add_function(FunctionEntry("ns", "f", owner=a.id))
    assert not registry.remove_function("ns", "f", b.id)
    assert registry.remove_function("ns", "f", a.id)
    assert registry.lookup("ns", "f") is None


def test_namespaces_of_is_sorted_and_exact():
    registry = Registry()
    worker = make_worker(registry)
    for namespace in ("zeta", "default", "alpha"):
        registry.add_function(FunctionEntry(namespace, "f", owner=worker.id))
    assert registry.namespaces_of("f") == ["alpha", "default", "zeta"]
    assert registry.lookup("default", "f") is not None
    assert registry.lookup("beta", "f") is None


def test_inflight_sets_are_per_worker_and_taken_once():
    registry = Registry()
    worker = make_worker(registry)
    registry.track(worker.id, "a")
    registry.track(worker.id, "b")
    registry.untrack(worker.id, "a")
    assert registry.inflight_count(worker.id) == 1
    assert registry.take_inflight(worker.id) == {"b"}
    assert registry.inflight_count(worker.id) == 0


def test_teardown_is_claimed_once():
    worker = Worker(FakeOutbound(), None)
    assert worker.begin_teardown()
    assert not worker.begin_teardown()


def test_gate_holds_frames_until_opened_then_applies_them_in_order():
    applied = []
    gate = NamespaceGate(applied.append)
    gate.submit({"n": 1})
    gate.submit({"n": 2})
    assert applied == [] and gate.pending

    assert gate.open()
    assert applied == [{"n": 1}, {"n": 2}]
    gate.submit({"n": 3})
    assert applied[-1] == {"n": 3}
    assert not gate.open()


def test_frames_arriving_during_the_drain_join_the_back_of_the_queue():
    applied = []
    draining = threading.Event()
    release = threading.Event()

    def slow_apply(frame):
        if frame["n"] == 1:
            draining.set()
            assert release.wait(5)
        applied.append(frame["n"])

    gate = NamespaceGate(slow_apply)
    gate.submit({"n": 1})
    opener = threading.Thread(target=gate.open, name="test-gate-opener")
    opener.start()
    assert draining.wait(5)
    gate.submit({"n": 2})  # arrives while frame 1 is being applied
    release.set()
    opener.join(5)
    assert applied == [1, 2]


def test_a_failing_held_frame_is_skipped():
    applied = []

    def apply(frame):
        if frame.get("bad"):
            raise ValueError("boom")
        applied.append(frame)

    gate = NamespaceGate(apply)
    gate.submit({"bad": True})
    gate.submit({"ok": True})
    gate.open()
    assert applied == [{"ok": True}]


def test_an_aborted_gate_swallows_everything():
    applied = []
    gate = NamespaceGate(applied.append)
    gate.submit({"n": 1})
    gate.abort()
    gate.submit({"n": 2})
    assert not gate.open()
    assert applied == []


def test_scheduler_runs_due_callbacks_and_skips_cancelled_ones():
    ran = []
    done = threading.Event()
    scheduler = Scheduler(lambda fn: fn())
    scheduler.start()
    try:
        cancelled = scheduler.call_later(0.05, ran.append, "cancelled")
        scheduler.call_later(0.1, ran.append, "second")
        scheduler.call_later(0.0, ran.append, "first")
        scheduler.call_later(0.15, done.set)
        cancelled.cancel()
        assert done.wait(5)
    finally:
        scheduler.stop()
    assert ran == ["first", "second"]
