"""Official-SDK workers in subprocesses, driven over stdin/stdout.

A peer is a worker written with an official SDK (``peer_python.py``,
``peer_node.mjs``) running in its own process. It prints events as
``@@interop {json}`` lines and answers JSON-line commands on stdin; see the
peer scripts for the protocol. :class:`Peer` starts one, reads its output on
a named thread, and turns each command into a blocking request with a
timeout. Nothing here sleeps: every wait is on a queue or a process, with a
deadline.
"""

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_PEER = os.path.join(HERE, "peer_python.py")
NODE_PEER = os.path.join(HERE, "peer_node.mjs")
MARK = "@@interop "

# Environment variables a peer must not inherit: they would rename it, move
# it to another namespace or engine, or send its traffic through a proxy.
_SCRUBBED = (
    "III_URL",
    "III_NAMESPACE",
    "III_WORKER_NAME",
    "III_TOKEN",
    "III_ISOLATION",
    "NODE_OPTIONS",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
)

# What the official SDKs log when a frame from the engine does not decode:
# Python 0.25 ("Failed to handle incoming message"), Node 0.22 ("Failed to
# parse incoming message").
_DECODE_FAILURES = ("Failed to handle incoming message", "Failed to parse incoming")

# How long one peer gets to start, answer a command, or stop.
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class PeerError(AssertionError):
    """A peer did not start, answer or stop as expected."""


class Peer:
    """An official-SDK worker in a subprocess, driven over stdin/stdout.

    Args:
        runtime: ``python`` or ``node``; picks the script and interpreter.
        url: The engine's worker URL.
        name: The worker name it announces.
        home: A scratch directory used as HOME and working directory.
        otel: Whether the SDK's OpenTelemetry stays on (``OTEL_ENABLED``).
        namespace: The worker's namespace (Python peer only), else none.

    Use as a context manager, or call :meth:`stop` in a ``finally``; it
    kills the process when it does not stop in time.
    """

    def __init__(
        self,
        runtime: str,
        url: str,
        name: str,
        home: str,
        otel: bool = False,
        namespace: Optional[str] = None,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self._command = self._command_line(runtime)
        self._env = self._environment(url, name, home, otel)
        if namespace is not None:
            self._env["PEER_NAMESPACE"] = namespace
        self._home = home
        self._events: queue.Queue[Dict[str, Any]] = queue.Queue()
        # Guards _replies, _chatter and _next_id: what the reader thread and
        # the requesting threads share.
        self._exchange_lock = threading.Lock()
        self._replies: Dict[int, queue.Queue[Dict[str, Any]]] = {}
        self._chatter: List[str] = []
        self._next_id = 0
        self._process: Optional[subprocess.Popen[str]] = None
        self._reader: Optional[threading.Thread] = None
        self._stderr_path = os.path.join(home, f"{name}-stderr.log")
        self.ready: Dict[str, Any] = {}

    @staticmethod
    def _command_line(runtime: str) -> List[str]:
        if runtime == "python":
            return [sys.executable, "-u", PYTHON_PEER]
        if runtime == "node":
            return [shutil.which("node") or "node", NODE_PEER]
        raise ValueError(f"unknown runtime {runtime!r}")

    @staticmethod
    def _environment(url: str, name: str, home: str, otel: bool) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env.update(
            {
                "III_URL": url,
                "PEER_NAME": name,
                "HOME": home,
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
                "OTEL_ENABLED": "true" if otel else "false",
                "PYTHONDONTWRITEBYTECODE": "1",
                # Telemetry, when on, leaves quickly enough to be seen in a test.
                "OTEL_SPANS_FLUSH_INTERVAL_MS": "200",
                "OTEL_LOGS_FLUSH_INTERVAL_MS": "200",
            }
        )
        return env

    # Lifecycle

    def start(self, timeout: float = START_TIMEOUT) -> "Peer":
        """Starts the process and blocks until it reports ``ready``.

        Raises:
            PeerError: it exited or stayed silent for ``timeout`` seconds;
                the process is stopped by then.
        """
        with open(self._stderr_path, "w") as stderr:
            self._process = subprocess.Popen(
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=self._home,
                env=self._env,
                universal_newlines=True,
                bufsize=1,
            )
        self._reader = threading.Thread(
            target=self._read, name=f"interop-peer-{self.name}", daemon=True
        )
        self._reader.start()
        try:
            self.ready = self.next_event("ready", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """Asks the peer to shut down, then kills it if it has not; returns its code.

        Idempotent; call it from a ``finally``.
        """
        process = self._process
        if process is None:
            return None
        try:
            if process.poll() is None:
                self._write({"op": "exit"})
                process.stdin.close()  # type: ignore[union-attr]
            return process.wait(timeout)
        except (PeerError, OSError, ValueError, subprocess.TimeoutExpired):
            process.kill()
            return process.wait(timeout)
        finally:
            if self._reader is not None:
                self._reader.join(timeout)
            if process.stdout is not None:
                process.stdout.close()

    def kill(self, timeout: float = STOP_TIMEOUT) -> None:
        """Kills the process at once, as a crash would; :meth:`stop` still works."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout)

    def __enter__(self) -> "Peer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # Talking to it

    def request(
        self, op: str, timeout: float = REQUEST_TIMEOUT, **fields: Any
    ) -> Dict[str, Any]:
        """Sends one command and blocks for its reply.

        Raises:
            PeerError: no reply within ``timeout`` seconds, or the peer died.
        """
        with self._exchange_lock:
            self._next_id += 1
            command_id = self._next_id
            replies: queue.Queue[Dict[str, Any]] = queue.Queue()
            self._replies[command_id] = replies
        command = dict(fields, op=op, id=command_id)
        self._write(command)
        try:
            reply = replies.get(timeout=timeout)
        except queue.Empty:
            raise PeerError(
                f"{self.runtime} peer gave no answer to {command!r} in {timeout:.0f}s"
                f"\n{self.diagnostics()}"
            ) from None
        finally:
            with self._exchange_lock:
                self._replies.pop(command_id, None)
        if reply.get("code") == "PEER_EXCEPTION":
            raise PeerError(f"{self.runtime} peer broke: {reply.get('message')}")
        return reply

    def call(
        self,
        function_id: str,
        payload: Any,
        timeout_ms: int = 10000,
        metadata: Any = None,
        void: bool = False,
        namespace: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Has the peer call ``function_id`` through the engine; returns the reply.

        The reply has ``ok`` and either ``result`` or ``code``/``message``.
        ``void`` sends it fire-and-forget (``TriggerAction.Void()``);
        ``namespace`` names the target's namespace (Python peer only).
        """
        return self.request(
            "call",
            timeout=timeout_ms / 1000.0 + 10.0,
            function_id=function_id,
            payload=payload,
            timeout_ms=timeout_ms,
            metadata=metadata,
            void=void,
            namespace=namespace,
        )

    def next_event(self, name: str, timeout: float) -> Dict[str, Any]:
        """Blocks for the next event called ``name``, skipping no other event.

        Raises:
            PeerError: another event came first, or none within ``timeout``.
        """
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            raise PeerError(
                f"{self.runtime} peer sent no {name!r} event in {timeout:.0f}s"
                f"\n{self.diagnostics()}"
            ) from None
        if event.get("event") != name:
            raise PeerError(
                f"{self.runtime} peer sent {event!r}, expected {name!r}"
                f"\n{self.diagnostics()}"
            )
        return event

    def diagnostics(self) -> str:
        """The peer's exit code, its last non-event lines and its stderr."""
        process = self._process
        code = None if process is None else process.poll()
        with self._exchange_lock:
            chatter = "\n".join(self._chatter[-20:])
        try:
            with open(self._stderr_path) as stderr_file:
                stderr = stderr_file.read()[-4000:]
        except OSError:
            stderr = ""
        return f"exit code: {code}\nstdout:\n{chatter}\nstderr:\n{stderr}"

    def decode_failures(self) -> List[str]:
        """Lines where the SDK said it could not handle a frame from the engine."""
        with self._exchange_lock:
            lines = list(self._chatter)
        try:
            with open(self._stderr_path) as stderr_file:
                lines.extend(stderr_file.read().splitlines())
        except OSError:
            pass
        return [line for line in lines if any(m in line for m in _DECODE_FAILURES)]

    # Internals

    def _write(self, command: Dict[str, Any]) -> None:
        process = self._process
        if process is None or process.stdin is None:
            raise PeerError(f"{self.runtime} peer is not running")
        try:
            process.stdin.write(json.dumps(command) + "\n")
            process.stdin.flush()
        except (OSError, ValueError) as exc:
            raise PeerError(
                f"{self.runtime} peer stopped reading: {exc}\n{self.diagnostics()}"
            ) from None

    def _read(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            if not line.startswith(MARK):
                with self._exchange_lock:
                    self._chatter.append(line.rstrip("\n"))
                continue
            self._deliver(json.loads(line[len(MARK) :]))

    def _deliver(self, message: Dict[str, Any]) -> None:
        command_id = message.get("id")
        if command_id is None:
            self._events.put(message)
            return
        with self._exchange_lock:
            replies = self._replies.get(command_id)
        if replies is not None:
            replies.put(message)
