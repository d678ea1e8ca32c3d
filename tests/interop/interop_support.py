"""Small helpers of the interop suite: availability, waits, logs, HTTP.

Nothing here sleeps: a wait polls with ``Event.wait`` up to a deadline.
"""

import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Tuple

# Set by the interop tox env: a missing official SDK is then a failure, so
# CI never passes by skipping.
REQUIRED = os.environ.get("III_TEST_INTEROP") == "1"
NODE_MODULES_ENV = "III_TEST_NODE_MODULES"

# Function ids: the iii_sync worker's, and each official peer's.
SYNC_PREFIX = "interop::sync::"
PEER_PREFIX = {"python": "interop::py::", "node": "interop::node::"}
SYNC_FUNCTIONS = ("crash", "custom", "echo", "hang", "note")
PEER_FUNCTIONS = ("echo", "fail", "hang", "http", "note")

# Availability


def python_sdk_missing() -> Optional[str]:
    """Why the official Python SDK cannot run here, or None when it can."""
    if sys.version_info < (3, 10):
        return "the official Python SDK (iii-sdk) needs Python 3.10+"
    if importlib.util.find_spec("iii") is None:
        return "the official Python SDK is not installed (pip install iii-sdk)"
    return None


def node_missing() -> Optional[str]:
    """Why the official Node SDK cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    modules = os.environ.get(NODE_MODULES_ENV)
    if not modules:
        return f"{NODE_MODULES_ENV} is not set (tox -e interop sets it)"
    if not os.path.isfile(os.path.join(modules, "iii-sdk", "package.json")):
        return f"no iii-sdk under {NODE_MODULES_ENV}={modules}"
    return None


# Waiting


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Polls ``predicate`` until it holds; raises AssertionError after ``timeout``.

    For engine state that has no event to wait on (a registration being
    applied). Each pause is an ``Event.wait``, bounded by the deadline.
    """
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        pause.wait(min(interval, remaining))


# Engine log capture


class RecordingHandler(logging.Handler):
    """Keeps every record at or above its level, for assertions."""

    def __init__(self, level: int = logging.WARNING) -> None:
        super().__init__(level)
        # Guards _records and _allowed: engine threads emit while tests read.
        self._records_lock = threading.Lock()
        self._records: List[logging.LogRecord] = []
        self._allowed: List[re.Pattern[str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._records_lock:
            self._records.append(record)

    def allow(self, pattern: str) -> None:
        """Excuses records whose message matches ``pattern``, until :meth:`take`.

        For a test whose scenario makes the engine warn on purpose.
        """
        with self._records_lock:
            self._allowed.append(re.compile(pattern))

    def take(self) -> List[logging.LogRecord]:
        """Returns the records seen so far that were not excused; forgets all."""
        with self._records_lock:
            taken, self._records = self._records, []
            allowed, self._allowed = self._allowed, []
        return [
            record
            for record in taken
            if not any(p.search(record.getMessage()) for p in allowed)
        ]


def describe(records: List[logging.LogRecord]) -> str:
    return "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in records)


def worker_row(rows: List[Dict[str, Any]], worker_id: str) -> Dict[str, Any]:
    """The one ``engine::workers::list`` row of ``worker_id``."""
    matches = [row for row in rows if row["id"] == worker_id]
    assert len(matches) == 1, f"worker {worker_id} listed {len(matches)}x: {rows!r}"
    return dict(matches[0])


# HTTP


def http_request(
    url: str, body: Any, method: str = "POST", timeout: float = 15.0
) -> Tuple[int, Dict[str, str], Any]:
    """Sends one JSON request; returns status, lower-cased headers and JSON body.

    An error status is returned like any other, not raised.
    """
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    # A direct connection, whatever proxy the environment names.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        raw = response.read()
        headers = {k.lower(): v for k, v in response.headers.items()}
        status = response.status if hasattr(response, "status") else response.code
    return status, headers, json.loads(raw.decode("utf-8")) if raw else None
