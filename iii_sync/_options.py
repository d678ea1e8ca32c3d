"""Worker options: defaults, environment variables, and their checks.

Resolution order for each option: the keyword argument, then its environment
variable, then the default. An environment variable that is set but empty
counts as unset, so ``III_NAMESPACE=`` in a deployment file does not become a
blank namespace.
"""

import os
import platform
import socket
from typing import Any, Dict, Mapping, Optional

from . import _protocol
from ._backoff import Backoff
from ._version import __version__

ENV_URL = "III_URL"
ENV_WORKER_NAME = "III_WORKER_NAME"
ENV_NAMESPACE = "III_NAMESPACE"
ENV_TOKEN = "III_TOKEN"
ENV_ISOLATION = "III_ISOLATION"

# Default values, each with the reason it is what it is.
DEFAULTS: Dict[str, Any] = {
    # The official SDKs' default; long enough for a slow handler chain.
    "invocation_timeout": 30.0,
    # register_worker() returns a still-connecting worker after this.
    "connect_timeout": 10.0,
    # One handshake attempt; the engine itself gives clients 10 s.
    "handshake_timeout": 10.0,
    # The official SDKs ping every 20 s and give up after 20 s more.
    "ping_interval": 20.0,
    "ping_timeout": 20.0,
    # Handlers running at once; nested calls do not count (see _pool).
    "max_workers": 16,
    # Invocations waiting for a handler thread before "worker_overloaded".
    "max_queued": 1000,
    # Fire-and-forget frames kept while disconnected; more raise.
    "max_offline_queue": 1000,
    # The engine's own limit on one WebSocket message.
    "max_message_size": _protocol.DEFAULT_MAX_MESSAGE_SIZE,
}


def _env(name: str, environ: Mapping[str, str]) -> Optional[str]:
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


# Longer than any real timeout, short enough for every wait primitive.
MAX_SECONDS = 10_000_000.0


def check_seconds(name: str, value: Any, allow_zero: bool = False) -> float:
    """Returns ``value`` as seconds; ValueError unless finite, positive (or
    zero when allowed) and at most :data:`MAX_SECONDS`."""
    number = float(value)
    low_ok = number >= 0 if allow_zero else number > 0
    if not (low_ok and number <= MAX_SECONDS):
        raise ValueError(
            "%s must be a number of seconds from 0 to %d, not %r"
            % (name, MAX_SECONDS, value)
        )
    return number


class WorkerOptions:
    """The resolved, checked settings of one worker. Read-only after creation."""

    def __init__(
        self,
        url: Optional[str] = None,
        environ: Optional[Mapping[str, str]] = None,
        **options: Any,
    ) -> None:
        env = os.environ if environ is None else environ
        unknown = set(options) - set(DEFAULTS) - _OTHER_OPTIONS
        if unknown:
            raise TypeError("unknown worker option(s): %s" % ", ".join(sorted(unknown)))

        self.url = url or _env(ENV_URL, env) or _protocol.DEFAULT_ENGINE_URL
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(
                "the engine URL must start with ws:// or wss://, not %r" % self.url
            )
        self.name = self._name(options.get("name"), env)
        self.namespace = self._namespace(options.get("namespace"), env)
        self.description: Optional[str] = options.get("description")
        self.isolation = _env(ENV_ISOLATION, env)
        self.reconnect = options.get("reconnect") or Backoff()
        if not isinstance(self.reconnect, Backoff):
            raise TypeError("reconnect must be a Backoff")
        self.headers = self._headers(options.get("headers"), env)
        self.concurrency: Optional[str] = options.get("concurrency")
        self.sslopt: Optional[Dict[str, Any]] = options.get("sslopt")
        self._numbers(options)

    def _numbers(self, options: Mapping[str, Any]) -> None:
        values = dict(DEFAULTS)
        values.update({k: v for k, v in options.items() if k in DEFAULTS})
        self.invocation_timeout = check_seconds(
            "invocation_timeout", values["invocation_timeout"]
        )
        self.connect_timeout = check_seconds(
            "connect_timeout", values["connect_timeout"], True
        )
        self.handshake_timeout = check_seconds(
            "handshake_timeout", values["handshake_timeout"]
        )
        self.ping_interval = check_seconds("ping_interval", values["ping_interval"])
        self.ping_timeout = check_seconds("ping_timeout", values["ping_timeout"])
        self.max_workers = int(values["max_workers"])
        self.max_queued = int(values["max_queued"])
        self.max_offline_queue = int(values["max_offline_queue"])
        self.max_message_size = int(values["max_message_size"])
        if min(self.max_workers, self.max_queued, self.max_message_size) < 1:
            raise ValueError(
                "max_workers, max_queued and max_message_size must be at least 1"
            )

    @staticmethod
    def _name(value: Optional[str], env: Mapping[str, str]) -> str:
        if value is not None:
            check_id(value, "name")
            return value
        return _env(ENV_WORKER_NAME, env) or "%s:%d" % (
            socket.gethostname(),
            os.getpid(),
        )

    @staticmethod
    def _namespace(value: Optional[str], env: Mapping[str, str]) -> Optional[str]:
        if value is not None:
            check_namespace(value, "namespace")
            return value
        return _env(ENV_NAMESPACE, env)

    @staticmethod
    def _headers(
        value: Optional[Mapping[str, str]], env: Mapping[str, str]
    ) -> Dict[str, str]:
        headers = dict(value or {})
        token = _env(ENV_TOKEN, env)
        given = {k.lower() for k in headers}
        if token and "authorization" not in given:
            headers["Authorization"] = "Bearer %s" % token
        return headers

    def redacted_headers(self) -> Dict[str, str]:
        """The handshake headers with credentials masked, for logs."""
        secret = {"authorization", "cookie", "proxy-authorization"}
        return {
            k: ("<redacted>" if k.lower() in secret else v)
            for k, v in self.headers.items()
        }


_OTHER_OPTIONS = frozenset(
    {
        "name",
        "namespace",
        "description",
        "reconnect",
        "headers",
        "concurrency",
        "sslopt",
    }
)


def check_namespace(value: Any, field: str = "namespace") -> None:
    """Raises ValueError for a blank namespace, TypeError for a non-string.

    The engine refuses a namespace that was named but left blank, so
    iii_sync refuses it before anything is sent.
    """
    if not isinstance(value, str):
        raise TypeError("%s must be a string, not %r" % (field, value))
    if _protocol.is_blank(value):
        raise ValueError(
            "%s is blank: give it a name, or leave it out to use 'default'" % field
        )


def check_id(value: Any, field: str) -> None:
    """Raises TypeError for a non-string id, ValueError for a blank one."""
    if not isinstance(value, str):
        raise TypeError("%s must be a string, not %r" % (field, value))
    if not value.strip():
        raise ValueError("%s must not be blank" % field)


def worker_metadata(options: WorkerOptions) -> Dict[str, Any]:
    """The ``engine::workers::register`` payload that announces a worker."""
    data: Dict[str, Any] = {
        "runtime": "python",
        "version": __version__,
        "name": options.name,
        "os": "%s %s (%s)"
        % (platform.system(), platform.release(), platform.machine()),
        "pid": os.getpid(),
        "isolation": options.isolation,
        "telemetry": {
            "language": (os.environ.get("LANG") or "").split(".")[0] or None,
            "framework": "iii-sync",
            "project_name": os.path.basename(os.getcwd()),
        },
    }
    if options.namespace is not None:
        data["namespace"] = options.namespace
    if options.description is not None:
        data["description"] = options.description
    return data
