"""Replays what the official Python and Node SDKs sent, frame for frame.

``tests/data/sdk_captures.json`` holds the frames each SDK sent to a stub
engine (environment.md §2.2): an announce, a function, an ``http`` trigger, a
call, answers to three invocations, then a reconnect with ``reattach`` and the
registration replay. Replayed against ``LocalEngine`` they must draw exactly
the replies the contract predicts and not one WARNING.
"""

import copy
import json
import logging
import os

import pytest
from engine_support import (
    RawWorker,
    make_engine_fixture,  # noqa: F401 (fixture)
    warnings_from,
)
from worker_support import wait_until

from iii_sync.engine._decode import decode_frame

pytestmark = pytest.mark.timeout(30)

DATA = os.path.join(os.path.dirname(__file__), "data", "sdk_captures.json")
with open(DATA, encoding="utf-8") as _file:
    CAPTURES = json.load(_file)["captures"]

# The captures were sanitised: a pid became the string "<PID>".
FAKE_PID = 4242


class Replay:
    """Drives one capture against one engine."""

    def __init__(self, engine):
        self.engine = engine
        self.ids = {}  # captured worker id -> real worker id
        self.tokens = {}  # captured token -> real token
        self.caller = RawWorker(engine.url)
        self.caller.announce(name="replay-caller")
        self.last_call = None

    def connect(self, items):
        worker = RawWorker(self.engine.url)
        greeting = items[0]["greeting"]
        self.ids[greeting["worker_id"]] = worker.id
        if "reattach_token" in greeting:
            self.tokens[greeting["reattach_token"]] = worker.token
        return worker

    def send(self, worker, frame):
        frame = self.rewrite(frame)
        assert decode_frame(json.dumps(frame)) == frame
        handler = getattr(self, "_after_" + frame["type"], None)
        if handler is None:
            worker.send(frame)
            return
        handler(worker, frame)

    def rewrite(self, frame):
        frame = copy.deepcopy(frame)
        data = frame.get("data")
        if isinstance(data, dict) and data.get("pid") == "<PID>":
            data["pid"] = FAKE_PID
        if frame["type"] == "reattach":
            previous = frame["previous_worker_id"]
            frame["previous_worker_id"] = self.ids[previous]
            if "reattach_token" in frame:
                frame["reattach_token"] = self.tokens[frame["reattach_token"]]
        return frame

    def _after_invokefunction(self, worker, frame):
        worker.send(frame)
        if frame.get("invocation_id") is None:
            return
        # Nothing registers demo::other: the engine answers (§4.2).
        reply = worker.expect_result(frame["invocation_id"])
        assert reply["error"] == {
            "code": "function_not_found",
            "message": "Function %s not found in namespace default."
            % frame["function_id"],
        }

    def stub_call(self, worker, stub_invoke):
        """Recreates the stub's call with a real caller; returns the routed id."""
        function_id = stub_invoke["function_id"]
        pending = self.caller.invoke(function_id, stub_invoke["data"])
        if ("default", function_id) not in self.engine.functions():
            self.last_call = (pending, None)
            return
        routed = worker.expect_invoke(function_id)
        assert routed["invocation_id"] == pending
        assert routed["data"] == dict(
            stub_invoke["data"], _caller_worker_id=self.caller.id
        )
        self.last_call = (pending, routed)

    def _after_invocationresult(self, worker, frame):
        pending, routed = self.last_call
        if routed is None:
            # The engine never routes an unknown function: the SDK's answer to
            # the stub has no pending call here and is dropped quietly.
            worker.send(frame)
            error = self.caller.expect_result(pending)["error"]
            assert error["code"] == "function_not_found"
            return
        frame["invocation_id"] = routed["invocation_id"]
        worker.send(frame)
        reply = self.caller.expect_result(pending)
        for key in ("result", "error"):
            assert reply.get(key) == frame.get(key)

    def close(self):
        self.caller.close()


def telemetry_socket(engine, tags):
    otel = RawWorker(engine.url, path="/otel", greet=False)
    for tag in tags:
        otel.send_binary(tag.encode("ascii") + b'{"resourceSpans":[]}')
    return otel


def registered(engine, owner_id):
    # The held function and trigger are applied one after the other.
    views = {view.id: view for view in engine.workers()}
    view = views.get(owner_id)
    return (
        view is not None
        and view.function_ids == ["demo::echo"]
        and len(view.triggers) == 1
    )


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_sdk_capture_replays_cleanly(make_engine, caplog, name):
    caplog.set_level(logging.DEBUG, logger="iii_sync.engine")
    capture = CAPTURES[name]
    engine = make_engine()
    otel = telemetry_socket(engine, capture["telemetry"])
    replay = Replay(engine)
    first_items, second_items = capture["connections"]
    with_token = "reattach_token" in first_items[0]["greeting"]
    try:
        # First connection: announce, register, call, answer the stub's calls.
        first = replay.connect(first_items)
        for item in first_items[1:]:
            if "out" in item:
                assert wait_until(lambda: registered(engine, first.id))
                replay.stub_call(first, item["out"])
            else:
                replay.send(first, item["in"])
        assert wait_until(lambda: registered(engine, first.id))
        first.barrier()

        # The stub then dropped the TCP connection. With a token the engine is
        # made to miss the drop, so that the reattach has something to evict.
        if not with_token:
            first.ws.sock.close()
            assert wait_until(lambda: first.id not in [w.id for w in engine.workers()])

        second = replay.connect(second_items)
        for item in second_items[1:]:
            replay.send(second, item["in"])
        second.barrier()
        assert wait_until(lambda: registered(engine, second.id))
        assert [w.id for w in engine.workers() if w.name != "replay-caller"] == [
            second.id
        ]
        (view,) = [w for w in engine.workers() if w.id == second.id]
        assert view.details["pid"] == FAKE_PID
        (trigger,) = engine.triggers()
        assert trigger.owner == second.id and trigger.provider == ("default", "http")
        assert second.stash == [] and first.stash == []
    finally:
        replay.close()
        otel.close()
    assert warnings_from(caplog) == [], [r.getMessage() for r in caplog.records]
