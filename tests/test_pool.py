import threading

import pytest

from iii_sync._concurrency import Driver
from iii_sync._pool import HandlerPool


def make_pool(max_workers=2, max_queued=10):
    return HandlerPool(Driver(), max_workers, max_queued, name="iii-test-pool")


def test_runs_jobs_on_named_threads():
    pool = make_pool()
    names = []
    done = threading.Event()

    def job():
        names.append(threading.current_thread().name)
        done.set()

    assert pool.submit(job)
    assert done.wait(5)
    assert names[0].startswith("iii-test-pool-")
    assert pool.shutdown(5)


def test_never_runs_more_than_max_workers():
    pool = make_pool(max_workers=2, max_queued=100)
    release = threading.Event()
    lock = threading.Lock()
    running = [0, 0]  # now, peak

    def job():
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1

    for _ in range(10):
        assert pool.submit(job)
    threading.Timer(0.2, release.set).start()
    assert pool.shutdown(10)
    assert running[1] == 2


def test_full_queue_refuses():
    pool = make_pool(max_workers=1, max_queued=1)
    release = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        release.wait(5)

    assert pool.submit(blocker)
    assert started.wait(5)
    assert pool.submit(lambda: None)
    assert not pool.submit(lambda: None)
    release.set()
    assert pool.shutdown(5)


def test_blocking_frees_the_slot_for_nested_work():
    pool = make_pool(max_workers=1)
    inner_done = threading.Event()
    outer_done = threading.Event()

    def inner():
        inner_done.set()

    def outer():
        with pool.blocking():
            assert pool.submit(inner)
            assert inner_done.wait(5)
        outer_done.set()

    assert pool.submit(outer)
    assert outer_done.wait(5)
    assert pool.shutdown(5)


def test_nested_chain_of_depth_ten_with_one_worker():
    pool = make_pool(max_workers=1)
    finished = []

    def level(n):
        def job():
            if n < 10:
                child_done = threading.Event()
                with pool.blocking():
                    pool.submit(lambda: (level(n + 1)(), child_done.set()))
                    assert child_done.wait(5)
            finished.append(n)

        return job

    done = threading.Event()
    pool.submit(lambda: (level(0)(), done.set()))
    assert done.wait(10)
    assert sorted(finished) == list(range(11))
    assert pool.shutdown(5)


def test_blocking_outside_pool_is_a_no_op():
    pool = make_pool()
    with pool.blocking():
        pass
    assert pool.shutdown(1)


def test_raising_job_does_not_kill_the_pool(caplog):
    pool = make_pool(max_workers=1)
    ok = threading.Event()

    def bad():
        raise SystemExit("handler tried to exit")

    pool.submit(bad)
    pool.submit(ok.set)
    assert ok.wait(5)
    assert pool.shutdown(5)
    assert "handler job raised" in caplog.text


def test_shutdown_times_out_with_stuck_job():
    pool = make_pool(max_workers=1)
    release = threading.Event()
    started = threading.Event()
    pool.submit(lambda: (started.set(), release.wait(10)))
    assert started.wait(5)
    assert not pool.shutdown(0.2)
    assert not pool.submit(lambda: None)
    release.set()


def test_rejects_zero_workers():
    with pytest.raises(ValueError):
        make_pool(max_workers=0)
