"""The cast of the interop suite: the engine, the iii_sync worker, the peers.

* :func:`start_engine`: a :class:`~iii_sync.engine.LocalEngine` on
  127.0.0.1, on free ports unless told otherwise.
* :func:`connect_sync_worker`: an iii_sync worker serving
  ``interop::sync::{echo,custom,crash,note,hang}``. ``note`` files its
  payload in :data:`NOTES`, so a test can see a fire-and-forget call arrive;
  ``hang`` files it in :data:`HANGING` and answers once :data:`RELEASE` is
  set.
* :func:`launch_peer`: an official-SDK worker, returned once the engine holds
  its registrations.
* :class:`Cast`: all of these for one test, each stopped after it.
"""

import contextlib
import queue
import threading
from typing import Any, Callable, Dict, Optional

from interop_peer import Peer
from interop_relay import TcpRelay
from interop_support import PEER_FUNCTIONS, PEER_PREFIX, SYNC_PREFIX, wait_until

import iii_sync
from iii_sync.engine import LocalEngine

# The official peers' registrations reach the engine within this.
REGISTRATION_TIMEOUT = 15.0
FAST_RECONNECT = iii_sync.Backoff(initial=0.05, maximum=0.5, jitter=0.0)

# Payloads of interop::sync::note calls, in arrival order, from every
# iii_sync worker of the session.
NOTES: "queue.Queue[Any]" = queue.Queue()

# interop::sync::hang calls put their payload here when they start, then
# wait for RELEASE (or data["seconds"]).
HANGING: "queue.Queue[Any]" = queue.Queue()
RELEASE = threading.Event()


def start_engine(port: int = 0, http_port: int = 0) -> LocalEngine:
    """A LocalEngine on 127.0.0.1, started; the caller stops it."""
    return LocalEngine(host="127.0.0.1", port=port, http_port=http_port).start()


# The iii_sync worker's functions


def sync_echo(data: Any, context: iii_sync.InvocationContext) -> Any:
    return {
        "runtime": "iii_sync",
        "echo": data,
        "caller": context.caller_worker_id,
        "metadata": context.metadata,
    }


def sync_custom(data: Any) -> Any:
    raise iii_sync.InvocationError(
        "interop_custom", f"iii_sync refused on purpose: {data.get('why')}"
    )


def sync_crash(data: Any) -> Any:
    raise RuntimeError(f"iii_sync crashed on purpose: {data.get('why')}")


def sync_note(data: Any) -> None:
    NOTES.put(data)


def sync_hang(data: Any) -> Any:
    HANGING.put(data)
    RELEASE.wait(float(data["seconds"]))
    return {"runtime": "iii_sync", "hung": data["seconds"]}


def connect_sync_worker(url: str, name: str = "interop-sync") -> iii_sync.Worker:
    """A connected iii_sync worker whose functions the engine already holds.

    The caller closes it.
    """
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
    worker.register_function(SYNC_PREFIX + "note", sync_note)
    worker.register_function(SYNC_PREFIX + "hang", sync_hang)
    worker.sync_registrations()
    return worker


def next_note(tag: str, timeout: float) -> Dict[str, Any]:
    """Blocks for the ``note`` payload carrying ``tag``; skips older ones.

    Raises:
        AssertionError: none arrived within ``timeout`` seconds.
    """
    try:
        while True:
            note = NOTES.get(timeout=timeout)
            if isinstance(note, dict) and note.get("tag") == tag:
                return note
    except queue.Empty:
        raise AssertionError(f"no note tagged {tag!r} within {timeout}s") from None


# Official peers


def peer_ready(engine: LocalEngine, runtime: str, namespace: str = "default") -> bool:
    """True once the engine holds the peer's functions and its http route."""
    prefix = PEER_PREFIX[runtime]
    functions = set(engine.functions())
    wanted = {(namespace, prefix + name) for name in PEER_FUNCTIONS}
    routes = [t for t in engine.triggers() if t.function_id == prefix + "http"]
    return wanted <= functions and any(t.provider is not None for t in routes)


def launch_peer(
    runtime: str,
    engine: LocalEngine,
    home: str,
    name: Optional[str] = None,
    otel: bool = False,
    url: Optional[str] = None,
    namespace: Optional[str] = None,
) -> Peer:
    """Starts an official-SDK peer and waits until its registrations apply.

    It connects to ``url``, by default the engine's, as a worker of
    ``namespace`` (default none). The caller stops it, in a ``finally``.

    Raises:
        AssertionError: it did not start or register in time.
    """
    address = url or engine.url
    name = name or f"interop-{runtime}"
    peer = Peer(runtime, address, name, home, otel, namespace)
    try:
        peer.start()
        try:
            wait_until(
                lambda: peer_ready(engine, runtime, namespace or "default"),
                REGISTRATION_TIMEOUT,
                f"the {runtime} peer's registrations",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{peer.diagnostics()}") from None
    except BaseException:
        peer.stop()
        raise
    return peer


def assert_calls_cross(
    runtime: str, peer: Peer, sync_worker: iii_sync.Worker, tag: str
) -> None:
    """One call each way succeeds: iii_sync to the peer, the peer to iii_sync."""
    result = sync_worker.trigger(PEER_PREFIX[runtime] + "echo", {"tag": tag})
    assert result["runtime"] == runtime
    assert result["echo"]["tag"] == tag

    reply = peer.call(SYNC_PREFIX + "echo", {"tag": tag})
    assert reply["ok"], reply
    assert reply["result"]["echo"]["tag"] == tag


class Cast:
    """Engines, relays, peers and iii_sync workers for one test, stopped after it.

    Every ``start_*`` method registers its undo on ``stack``, so the test
    body needs no ``finally``: the stack stops peers and workers before the
    engines they use, whether the test passed or not. Stopping something
    early is fine; every undo is idempotent.
    """

    def __init__(self, stack: contextlib.ExitStack, home: str) -> None:
        self._stack = stack
        self._home = home

    def start_engine(self, port: int = 0, http_port: int = 0) -> LocalEngine:
        engine = start_engine(port, http_port)
        self._stack.callback(engine.stop)
        return engine

    def start_relay(self, engine: LocalEngine) -> TcpRelay:
        relay = TcpRelay(engine.port)
        self._stack.callback(relay.close)
        return relay

    def start_peer(self, runtime: str, engine: LocalEngine, **options: Any) -> Peer:
        """:func:`launch_peer` with this test's scratch directory."""
        peer = launch_peer(runtime, engine, self._home, **options)
        self._stack.callback(peer.stop)
        return peer

    def start_bare_peer(self, runtime: str, url: str, name: str) -> Peer:
        """A peer that is not waited for beyond its ``ready`` event."""
        peer = Peer(runtime, url, name, self._home)
        self._stack.callback(peer.stop)
        return peer.start()

    def start_sync_worker(self, url: str) -> iii_sync.Worker:
        worker = connect_sync_worker(url)
        self._stack.callback(worker.close, timeout=5.0)
        return worker

    def on_exit(self, undo: Callable[[], Any]) -> None:
        """Runs ``undo`` after the test, before what was started earlier."""
        self._stack.callback(undo)
