"""Helpers for the engine tests: a raw-frame worker and small fakes.

``RawWorker`` speaks the protocol with websocket-client and JSON frames, with
no SDK in between, which is the most direct way to pin each engine rule.
"""

import json
import threading
import uuid

import pytest
import websocket

from iii_sync.engine import LocalEngine

DEFAULT_TIMEOUT = 5.0


@pytest.fixture(name="make_engine")
def make_engine_fixture():
    """Starts engines on free ports; stops them after the test."""
    engines = []

    def make(**options):
        options.setdefault("port", 0)
        options.setdefault("http_port", 0)
        engine = LocalEngine(**options).start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()


@pytest.fixture(name="engine")
def engine_fixture(make_engine):
    return make_engine()


@pytest.fixture(name="connect")
def connect_fixture(engine):
    """Opens raw workers on ``engine``; closes them after the test."""
    opened = []

    def make(**options):
        worker = RawWorker(engine.url, **options)
        opened.append(worker)
        return worker

    yield make
    for worker in opened:
        worker.close()


class RawWorker:
    """One connection to a ``LocalEngine``; frames in and out as dicts.

    The ``expect_*`` helpers wait for a matching frame and keep the others
    aside (``stash``), because replies and trigger fires from the engine's
    call pool may interleave in any order.
    """

    def __init__(self, url, path="/", timeout=DEFAULT_TIMEOUT, greet=True):
        self.ws = websocket.create_connection(
            url + path, timeout=timeout, suppress_origin=True
        )
        self.stash = []
        self.id = None
        self.token = None
        if greet:
            hello = self.recv()
            assert hello["type"] == "workerregistered", hello
            self.id = hello["worker_id"]
            self.token = hello["reattach_token"]

    # Raw I/O

    def send(self, frame):
        self.ws.send(json.dumps(frame))

    def send_text(self, text):
        self.ws.send(text)

    def send_binary(self, data):
        self.ws.send_binary(data)

    def recv(self, timeout=DEFAULT_TIMEOUT):
        """The next frame (stashed ones first); fails if none arrives in time."""
        if self.stash:
            return self.stash.pop(0)
        self.ws.settimeout(timeout)
        return json.loads(self.ws.recv())

    def wait_for(self, predicate, timeout=DEFAULT_TIMEOUT):
        """The first frame matching ``predicate``; others are stashed."""
        for index, frame in enumerate(self.stash):
            if predicate(frame):
                return self.stash.pop(index)
        self.ws.settimeout(timeout)
        while True:
            frame = json.loads(self.ws.recv())
            if predicate(frame):
                return frame
            self.stash.append(frame)

    def barrier(self):
        """Pings and waits for the pong: every earlier inline frame is done."""
        self.send({"type": "ping"})
        self.wait_for(lambda frame: frame["type"] == "pong")

    def expect_closed(self, timeout=DEFAULT_TIMEOUT):
        """Reads until the engine closes; returns the Close payload (or None)."""
        self.ws.settimeout(timeout)
        try:
            while True:
                opcode, frame = self.ws.recv_data_frame(True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return frame.data
        except websocket.WebSocketConnectionClosedException:
            return None

    def close(self):
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass

    # Protocol helpers

    def invoke(self, function_id, data, invocation_id=None, **extra):
        """Sends an ``invokefunction`` and returns its invocation id."""
        invocation_id = invocation_id or str(uuid.uuid4())
        frame = {
            "type": "invokefunction",
            "function_id": function_id,
            "data": data,
            "invocation_id": invocation_id,
        }
        frame.update(extra)
        self.send(frame)
        return invocation_id

    def call(self, function_id, data=None, **extra):
        """Invokes and returns the matching ``invocationresult``."""
        invocation_id = self.invoke(function_id, {} if data is None else data, **extra)
        return self.expect_result(invocation_id)

    def expect_result(self, invocation_id):
        return self.wait_for(
            lambda frame: (
                frame["type"] == "invocationresult"
                and frame["invocation_id"] == invocation_id
            )
        )

    def announce(self, name=None, namespace=None, pid=4242, **fields):
        """Calls ``engine::workers::register`` and returns its result frame."""
        data = dict(fields, pid=pid)
        if name is not None:
            data["name"] = name
        if namespace is not None:
            data["namespace"] = namespace
        return self.call("engine::workers::register", data)

    def register_function(self, function_id, **fields):
        self.send(dict(fields, type="registerfunction", id=function_id))

    def expect_invoke(self, function_id=None):
        return self.wait_for(
            lambda frame: (
                frame["type"] == "invokefunction"
                and function_id in (None, frame["function_id"])
            )
        )

    def expect_type(self, frame_type):
        return self.wait_for(lambda frame: frame["type"] == frame_type)

    def answer(self, invoke, result=None, error=None):
        frame = {
            "type": "invocationresult",
            "invocation_id": invoke["invocation_id"],
            "function_id": invoke["function_id"],
        }
        if error is not None:
            frame["error"] = error
        else:
            frame["result"] = result
        self.send(frame)


def warnings_from(caplog, logger_prefix="iii_sync.engine"):
    """WARNING-or-worse records the engine logged."""
    return [
        r
        for r in caplog.records
        if r.levelname in ("WARNING", "ERROR", "CRITICAL")
        and r.name.startswith(logger_prefix)
    ]


class FakeOutbound:
    """An ``Outbound`` that records frames instead of sending them."""

    def __init__(self):
        self.frames = []
        self.closed = False
        self.aborted = False
        self._arrived = threading.Condition()

    def send(self, frame):
        if self.closed or self.aborted:
            return False
        with self._arrived:
            self.frames.append(frame)
            self._arrived.notify_all()
        return True

    def wait_for(self, count, timeout=DEFAULT_TIMEOUT):
        """Blocks until ``count`` frames were sent; returns the frames."""
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.frames) >= count, timeout)
            return list(self.frames)

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True

    def of_type(self, frame_type):
        return [f for f in self.frames if f["type"] == frame_type]
