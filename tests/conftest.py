"""Shared fixtures: a stub engine, fast worker options, leak checks."""

import os
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from stub_engine import StubEngine  # noqa: E402
from worker_support import FAST  # noqa: E402

import iii_sync  # noqa: E402


@pytest.fixture
def stub():
    with StubEngine() as engine:
        yield engine


@pytest.fixture
def make_worker():
    """Creates workers with fast timings and closes them after the test."""
    workers = []

    def make(url, **options):
        merged = dict(FAST)
        merged.setdefault("name", "test-%d" % len(workers))
        merged.update(options)
        worker = iii_sync.register_worker(url, **merged)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.close(timeout=5)


@pytest.fixture(autouse=True)
def no_thread_errors(monkeypatch):
    """Fails a test if any thread died with an unhandled exception."""
    errors = []
    if hasattr(threading, "excepthook"):  # Python 3.8+
        monkeypatch.setattr(threading, "excepthook", errors.append)
    yield
    assert not errors, "unhandled exception in thread: %r" % (errors,)
