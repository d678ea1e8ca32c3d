"""``LocalEngine``: the embedded iii engine, for development and tests.

It speaks the worker protocol with the real engine's rules (see
``engine-protocol.md`` in the project notes) on a WebSocket port, and serves
``http`` triggers on a second port. Everything runs on background threads of
the calling process; production uses the real engine.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, FrozenSet, List, Optional, Tuple

from .. import _protocol
from ._builtins import DiscoveryFunctions, function_summary
from ._lifecycle import Lifecycle
from ._providers import InProcessProvider
from ._pubsub import PubSub
from ._registration import Registrar
from ._registry import Registry
from ._router import Router
from ._scheduler import Scheduler
from ._server import WebSocketListener
from ._session import Session, WebSocketOutbound, serve_telemetry
from ._state import StateStore, StateTrigger
from ._trigger_api import TriggerFunctions
from ._triggers import TriggerRegistry
from ._views import TriggerView, WorkerView, function_keys, trigger_views, worker_views
from ._watchers import FunctionsAvailable, WorkersAvailable

logger = logging.getLogger(__name__)

DEFAULT_PORT = 49134
DEFAULT_HTTP_PORT = 3111
DEFAULT_NAMESPACE_GRACE = 5.0
GRACE_ENV = "III_NAMESPACE_GRACE_MS"
# Builtins, trigger fires and blocked in-process calls share this pool; it is
# large because an in-process call may wait on a worker for a long time.
DEFAULT_MAX_CALLS = 128
# How long stop() waits for the call pool to finish running work.
_POOL_STOP_TIMEOUT = 5.0


def _grace_from_env(default: float) -> float:
    raw = os.environ.get(GRACE_ENV)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw) / 1000.0
    except ValueError:
        logger.warning(
            "ignoring %s=%r: not a whole number of milliseconds", GRACE_ENV, raw
        )
        return default


class LocalEngine:
    """A local iii engine on background threads.

    Args:
        host: Interface both listeners bind to.
        port: Worker WebSocket port; 0 picks a free one.
        http_port: Port of the ``http`` trigger server; 0 picks a free one.
        namespace_grace: Seconds an unannounced connection's registrations are
            held (engine-protocol §3.3); ``III_NAMESPACE_GRACE_MS`` overrides.
        functions_poll_interval: Seconds between polls of the
            ``engine::functions-available`` trigger type (the engine uses 5).
        max_calls: Size of the call pool (builtins, trigger fires).

    Example::

        with LocalEngine(port=0, http_port=0) as engine:
            connect_a_worker(engine.url)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        http_port: int = DEFAULT_HTTP_PORT,
        namespace_grace: float = DEFAULT_NAMESPACE_GRACE,
        functions_poll_interval: float = 5.0,
        max_calls: int = DEFAULT_MAX_CALLS,
    ) -> None:
        self._host = host
        self._http_port = http_port
        self._executor = ThreadPoolExecutor(
            max_calls, thread_name_prefix="iii-engine-call"
        )
        self._scheduler = Scheduler(self._executor.submit)
        self._registry = Registry()
        self._router = Router(self._registry, self._executor)
        self._triggers = TriggerRegistry(self._registry)
        self._workers_watch = WorkersAvailable(self._router, self._executor)
        self._lifecycle = Lifecycle(
            self._registry,
            self._router,
            self._triggers,
            Registrar(self._registry, self._triggers),
            self._scheduler,
            _grace_from_env(namespace_grace),
            self._workers_watch.notify,
        )
        self._providers = self._build_providers(functions_poll_interval)
        self._listener = WebSocketListener(
            host, port, self._serve_worker, serve_telemetry
        )
        # Guards _state: "new" -> "running" -> "stopped".
        self._state_lock = threading.Lock()
        self._state = "new"

    def _build_providers(self, poll_interval: float) -> List[InProcessProvider]:
        # Builtins first, then the in-process trigger types in `default`.
        DiscoveryFunctions(self._registry, self._triggers, self._lifecycle).install()
        TriggerFunctions(self._registry, self._triggers).install()
        state_trigger = StateTrigger(self._router, self._executor)
        StateStore(state_trigger).install(self._registry)
        pubsub = PubSub(self._router, self._executor)
        pubsub.install(self._registry)
        functions_watch = FunctionsAvailable(
            self._router, self._executor, self._function_snapshot, poll_interval
        )
        providers: List[InProcessProvider] = [
            state_trigger,
            pubsub,
            self._workers_watch,
            functions_watch,
        ]
        providers.extend(self._optional_providers())
        for provider in providers:
            self._triggers.add_inprocess(provider)
        return providers

    def _optional_providers(self) -> List[InProcessProvider]:
        # http and cron live in their own modules; either may be absent.
        found: List[InProcessProvider] = []
        try:
            from ._http import HttpProvider
        except ImportError as exc:
            logger.debug("no http trigger provider: %s", exc)
        else:
            found.append(HttpProvider(self._router, self._host, self._http_port))
        try:
            from ._cron import CronProvider
        except ImportError as exc:
            logger.debug("no cron trigger provider: %s", exc)
        else:
            found.append(CronProvider(self._router))
        return found

    # Lifecycle

    def start(self) -> LocalEngine:
        """Starts both listeners; returns once they accept connections.

        Call once, from any thread. Returns self.

        Raises:
            OSError: a port cannot be bound.
            RuntimeError: the engine was already started.
        """
        with self._state_lock:
            if self._state != "new":
                raise RuntimeError("LocalEngine.start() may be called only once")
            self._state = "running"
        try:
            self._scheduler.start()
            for provider in self._providers:
                provider.start()
            self._listener.start()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "local iii engine listening on %s (http triggers on %s)",
            self.url,
            self.http_url,
        )
        return self

    def stop(self) -> None:
        """Closes every connection and joins the engine's threads.

        Idempotent; call from any thread except the engine's own. Blocks for a
        few seconds at most. Calls still waiting on a worker end with
        ``invocation_stopped`` as their connections go.
        """
        with self._state_lock:
            if self._state != "running":
                self._state = "stopped"
                return
            self._state = "stopped"

        # Connections first, so that teardown halts whatever is in flight.
        self._listener.stop(lambda connection: WebSocketOutbound(connection).abort())
        for provider in self._providers:
            try:
                provider.stop()
            except Exception:
                logger.exception(
                    "trigger provider %s failed to stop", provider.trigger_type
                )
        self._scheduler.stop()
        self._stop_pool()
        logger.info("local iii engine stopped")

    def _stop_pool(self) -> None:
        stopper = threading.Thread(
            target=self._executor.shutdown, name="iii-engine-call-stop", daemon=True
        )
        stopper.start()
        stopper.join(_POOL_STOP_TIMEOUT)
        if stopper.is_alive():
            logger.warning(
                "engine calls still running after %.0fs; left behind",
                _POOL_STOP_TIMEOUT,
            )

    def __enter__(self) -> LocalEngine:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # Addresses

    @property
    def url(self) -> str:
        """``ws://host:port`` of the worker listener (the bound port once started)."""
        return f"ws://{_bracket(self._host)}:{self.port}"

    @property
    def port(self) -> int:
        """The worker listener's port: the bound one once started."""
        return self._listener.port

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the ``http`` trigger server."""
        port = self._http_port
        for provider in self._providers:
            if provider.trigger_type == "http":
                port = getattr(provider, "port", port)
        return f"http://{_bracket(self._host)}:{port}"

    # What tests and tools may look at or do

    def workers(self) -> List[WorkerView]:
        """A snapshot of connected workers; thread-safe, never blocks for long."""
        return worker_views(self._registry, self._triggers)

    def functions(self) -> List[Tuple[str, str]]:
        """Sorted ``(namespace, function id)`` pairs, builtins included."""
        return function_keys(self._registry)

    def triggers(self) -> List[TriggerView]:
        """Every trigger binding, live and parked."""
        return trigger_views(self._triggers)

    def call(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = _protocol.DEFAULT_NAMESPACE,
        metadata: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Calls a function through the in-process path and blocks for it.

        Any thread but a connection thread of this engine.

        Raises:
            CallFailed: an error result, a miss, or (code ``timeout``) no
                answer within ``timeout`` seconds.
        """
        return self._router.call(
            function_id, data, namespace=namespace, metadata=metadata, timeout=timeout
        )

    # Internals

    def _serve_worker(self, connection: Any) -> None:
        Session(connection, self._lifecycle, self._router, self._triggers).run()

    def _function_snapshot(self) -> Tuple[FrozenSet[Tuple[str, str]], List[Any]]:
        entries = self._registry.functions()
        pairs = frozenset((e.namespace, e.function_id) for e in entries)
        return pairs, [function_summary(e, self._registry) for e in entries]


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
