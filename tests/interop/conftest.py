"""Fixtures of the interop suite: an engine, an iii_sync worker, official peers.

Every test here runs the embedded :class:`~iii_sync.engine.LocalEngine` on
free ports of 127.0.0.1 and talks to it over real sockets. The official SDKs
run in subprocesses (:class:`interop_support.Peer`). A test is skipped when
an official SDK is missing, unless ``III_TEST_INTEROP=1`` (set by
``tox -e interop``), where that is a failure instead.

Every test also checks that the engine logged no WARNING or worse while it
ran, fixture set-up included: the official SDKs' frames must decode cleanly.
"""

import logging
import os
import sys
from typing import Any, Iterator, Optional

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from interop_support import (  # noqa: E402
    PEER_FUNCTIONS,
    PEER_PREFIX,
    REQUIRED,
    SYNC_PREFIX,
    Peer,
    RecordingHandler,
    describe,
    node_missing,
    python_sdk_missing,
    wait_until,
)

import iii_sync  # noqa: E402
from iii_sync.engine import LocalEngine  # noqa: E402

ENGINE_LOGGER = "iii_sync.engine"
# The official peers answer the engine within this; registration is quick.
REGISTRATION_TIMEOUT = 15.0
FAST_RECONNECT = iii_sync.Backoff(initial=0.05, maximum=0.5, jitter=0.0)


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


# Engine and iii_sync worker


def start_engine(port: int = 0, http_port: int = 0) -> LocalEngine:
    """A LocalEngine on 127.0.0.1, started."""
    return LocalEngine(host="127.0.0.1", port=port, http_port=http_port).start()


@pytest.fixture(scope="module")
def engine() -> Iterator[LocalEngine]:
    running = start_engine()
    try:
        yield running
    finally:
        running.stop()


def sync_echo(data: Any, context: iii_sync.InvocationContext) -> Any:
    return {"runtime": "iii_sync", "echo": data, "caller": context.caller_worker_id}


def sync_custom(data: Any) -> Any:
    raise iii_sync.InvocationError(
        "interop_custom", f"iii_sync refused on purpose: {data.get('why')}"
    )


def sync_crash(data: Any) -> Any:
    raise RuntimeError(f"iii_sync crashed on purpose: {data.get('why')}")


def connect_sync_worker(url: str, name: str = "interop-sync") -> iii_sync.Worker:
    """An iii_sync worker serving ``interop::sync::{echo,custom,crash}``."""
    worker = iii_sync.register_worker(
        url,
        name=name,
        reconnect=FAST_RECONNECT,
        connect_timeout=10.0,
        invocation_timeout=10.0,
    )
    worker.register_function(SYNC_PREFIX + "echo", sync_echo)
    worker.register_function(SYNC_PREFIX + "custom", sync_custom)
    worker.register_function(SYNC_PREFIX + "crash", sync_crash)
    worker.sync_registrations()
    return worker


@pytest.fixture(scope="module")
def sync_worker(engine: LocalEngine) -> Iterator[iii_sync.Worker]:
    worker = connect_sync_worker(engine.url)
    try:
        yield worker
    finally:
        worker.close(timeout=5.0)


# Official peers


def peer_ready(engine: LocalEngine, runtime: str) -> bool:
    """True once the engine holds the peer's functions and its http route."""
    prefix = PEER_PREFIX[runtime]
    functions = set(engine.functions())
    wanted = {("default", prefix + name) for name in PEER_FUNCTIONS}
    routes = [t for t in engine.triggers() if t.function_id == prefix + "http"]
    return wanted <= functions and any(t.provider is not None for t in routes)


def launch_peer(
    runtime: str,
    engine: LocalEngine,
    home: str,
    name: Optional[str] = None,
    otel: bool = False,
) -> Peer:
    """Starts an official-SDK peer and waits until its registrations apply.

    The caller must stop it (in a ``finally``).
    """
    peer = Peer(runtime, engine.url, name or f"interop-{runtime}", home, otel)
    try:
        peer.start()
        try:
            wait_until(
                lambda: peer_ready(engine, runtime),
                REGISTRATION_TIMEOUT,
                f"the {runtime} peer's registrations",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{peer.diagnostics()}") from None
    except BaseException:
        peer.stop()
        raise
    return peer


@pytest.fixture(scope="module", params=["python", "node"])
def runtime(request: Any) -> str:
    """Each official SDK in turn."""
    require(request.param)
    return str(request.param)


@pytest.fixture(scope="module")
def peer(runtime: str, engine: LocalEngine, tmp_path_factory: Any) -> Iterator[Peer]:
    """An official-SDK worker connected to ``engine`` (OTel off)."""
    home = str(tmp_path_factory.mktemp(f"peer-{runtime}"))
    started = launch_peer(runtime, engine, home)
    try:
        yield started
    finally:
        started.stop()
