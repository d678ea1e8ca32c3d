"""Fixtures of the interop suite: an engine, an iii_sync worker, official peers.

Every test here runs the embedded :class:`~iii_sync.engine.LocalEngine` on
free ports of 127.0.0.1 and talks to it over real sockets. The official SDKs
run in subprocesses (:class:`interop_peer.Peer`). A test is skipped when an
official SDK is missing, unless ``III_TEST_INTEROP=1`` (set by
``tox -e interop``), where that is a failure instead.

Every test also checks that the engine logged no WARNING or worse while it
ran, fixture set-up included: the official SDKs' frames must decode cleanly.
A test that makes the engine warn on purpose excuses that one message with
``engine_log.allow(pattern)``.

To run it outside tox (Python 3.10+ with ``iii-sdk`` installed)::

    npm install --prefix /tmp/iii-node iii-sdk@0.22
    III_TEST_NODE_MODULES=/tmp/iii-node/node_modules pytest tests/interop
"""

import contextlib
import logging
import os
import sys
from typing import Any, Iterator

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from interop_peer import Peer  # noqa: E402
from interop_setup import (  # noqa: E402
    Cast,
    connect_sync_worker,
    launch_peer,
    start_engine,
)
from interop_support import (  # noqa: E402
    REQUIRED,
    RecordingHandler,
    describe,
    node_missing,
    python_sdk_missing,
)

import iii_sync  # noqa: E402
from iii_sync.engine import LocalEngine  # noqa: E402

ENGINE_LOGGER = "iii_sync.engine"


def require(runtime: str) -> None:
    """Skips (or, under ``III_TEST_INTEROP=1``, fails) when ``runtime`` is missing."""
    missing = python_sdk_missing() if runtime == "python" else node_missing()
    if missing is None:
        return
    if REQUIRED:
        pytest.fail("III_TEST_INTEROP=1 but " + missing, pytrace=False)
    pytest.skip(missing)


# Engine log: no WARNING from the engine during any test


@pytest.fixture(scope="session")
def engine_log() -> Iterator[RecordingHandler]:
    """Collects WARNING+ records of the ``iii_sync.engine`` loggers."""
    logger = logging.getLogger(ENGINE_LOGGER)
    handler = RecordingHandler(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def engine_stays_quiet(engine_log: RecordingHandler) -> Iterator[None]:
    """Fails the test if the engine warned since the previous check.

    Set-up of wider fixtures runs before this one, so a warning caused by a
    peer's registration frames counts against the first test that uses it.
    """
    assert logging.getLogger(ENGINE_LOGGER).isEnabledFor(logging.WARNING)
    yield
    records = engine_log.take()
    assert not records, "the engine logged warnings:\n" + describe(records)


# Engine, iii_sync worker, official peers


@pytest.fixture(scope="module")
def engine() -> Iterator[LocalEngine]:
    running = start_engine()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def sync_worker(engine: LocalEngine) -> Iterator[iii_sync.Worker]:
    worker = connect_sync_worker(engine.url)
    try:
        yield worker
    finally:
        worker.close(timeout=5.0)


@pytest.fixture(scope="module", params=["python", "node"])
def runtime(request: Any) -> str:
    """Each official SDK in turn."""
    require(request.param)
    return str(request.param)


@pytest.fixture
def python_runtime() -> str:
    """The official Python SDK only (for what the Node SDK 0.22 lacks)."""
    require("python")
    return "python"


@pytest.fixture(scope="module")
def peer(runtime: str, engine: LocalEngine, tmp_path_factory: Any) -> Iterator[Peer]:
    """An official-SDK worker connected to ``engine`` (OTel off)."""
    home = str(tmp_path_factory.mktemp(f"peer-{runtime}"))
    started = launch_peer(runtime, engine, home)
    try:
        yield started
    finally:
        code = started.stop()
    # A clean shutdown against this engine: the SDK closed and exited itself,
    # and never failed to read one of the engine's frames.
    assert code == 0, f"{runtime} peer exited with {code}\n{started.diagnostics()}"
    assert not started.decode_failures(), started.diagnostics()


@pytest.fixture
def cast(tmp_path: Any) -> Iterator[Cast]:
    """Starts what one test needs and stops all of it after the test."""
    with contextlib.ExitStack() as stack:
        yield Cast(stack, str(tmp_path))
