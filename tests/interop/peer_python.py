"""A worker built on the official Python SDK (``iii-sdk``), driven by the tests.

Run as ``python peer_python.py`` with ``III_URL`` pointing at the engine and
``PEER_NAME`` naming the worker. It registers five functions and an ``http``
trigger, then prints events and answers commands:

* stdout: one event per line, ``@@interop {json}``; other lines (SDK chatter)
  are not for the tests.
* stdin: one command per line, ``{"id", "op", ...}``. ``op`` is ``call``
  (``function_id``, ``payload``, ``timeout_ms``), ``state`` or ``exit``. Each
  gets one reply event carrying the same ``id``.

It needs Python 3.10+ and never runs inside the test process: the SDK's event
loop thread, OpenTelemetry and atexit hooks stay out of pytest that way.
"""

import json
import os
import sys
import threading
from typing import Any, Dict

from iii import (
    InitOptions,
    InvocationError,
    RegistrationRejectedError,
    TriggerAction,
    register_worker,
)

MARK = "@@interop "
PREFIX = "interop::py::"
RUNTIME = "python"

# Guards stdout: command threads and the main thread print whole lines.
_stdout_lock = threading.Lock()


def emit(event: Dict[str, Any]) -> None:
    """Prints one event line for the test."""
    line = MARK + json.dumps(event, sort_keys=True) + "\n"
    with _stdout_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


# The functions this worker serves


def echo(data: Any, metadata: Any = None) -> Any:
    return {"runtime": RUNTIME, "echo": data, "metadata": metadata}


def note(data: Any) -> None:
    emit({"event": "noted", "data": data})


def hang(data: Any) -> Any:
    # Answers only after data["seconds"]: a call the test can leave in flight.
    threading.Event().wait(float(data["seconds"]))
    return {"runtime": RUNTIME, "hung": data["seconds"]}


def fail(data: Any) -> Any:
    why = data.get("why") if isinstance(data, dict) else data
    raise ValueError(f"python peer failed on purpose: {why}")


def http_reply(data: Any) -> Any:
    body = {
        "runtime": RUNTIME,
        "method": data.get("method"),
        "path": data.get("path"),
        "path_params": data.get("path_params"),
        "query_params": data.get("query_params"),
        "received": data.get("body"),
    }
    return {
        "status_code": 201,
        "headers": {"x-interop-runtime": RUNTIME},
        "body": body,
    }


# Commands from the test


def call(worker: Any, command: Dict[str, Any]) -> Dict[str, Any]:
    request = {
        "function_id": command["function_id"],
        "payload": command.get("payload"),
        "timeout_ms": command.get("timeout_ms", 10000),
        "metadata": command.get("metadata"),
        "namespace": command.get("namespace"),
    }
    if command.get("void"):
        request["action"] = TriggerAction.Void()
    try:
        return {"ok": True, "result": worker.trigger(request)}
    except InvocationError as error:
        return {
            "ok": False,
            "code": error.code,
            "message": error.message,
            "stacktrace": error.stacktrace,
        }
    except RegistrationRejectedError as error:
        return {"ok": False, "code": error.code, "message": str(error)}


def state(worker: Any, command: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "ok": True,
        "state": worker.get_connection_state(),
        "worker_id": worker.worker_id,
    }


COMMANDS = {"call": call, "state": state}


def answer(worker: Any, command: Dict[str, Any]) -> None:
    try:
        reply = COMMANDS[command["op"]](worker, command)
    except Exception as exc:  # reported to the test, which fails on it
        reply = {"ok": False, "code": "PEER_EXCEPTION", "message": repr(exc)}
    reply["id"] = command.get("id")
    emit(reply)


def serve(worker: Any) -> None:
    # Each command on its own thread, so a slow call does not hold the rest.
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if command.get("op") == "exit":
            return
        threading.Thread(
            target=answer, args=(worker, command), name="peer-command", daemon=True
        ).start()


def main() -> None:
    options = InitOptions(
        worker_name=os.environ["PEER_NAME"],
        namespace=os.environ.get("PEER_NAMESPACE"),
        invocation_timeout_ms=10000,
    )
    try:
        worker = register_worker(os.environ["III_URL"], options)
    except RegistrationRejectedError as error:
        # Refused before it got going. The SDK's loop thread would keep the
        # process alive, so leave at once.
        emit({"event": "ready", "rejected": error.code})
        sys.stdout.flush()
        os._exit(0)
    worker.register_function(PREFIX + "echo", echo, description="echoes its input")
    worker.register_function(PREFIX + "fail", fail, description="always raises")
    worker.register_function(PREFIX + "http", http_reply, description="http reply")
    worker.register_function(PREFIX + "note", note, description="reports its input")
    worker.register_function(PREFIX + "hang", hang, description="answers late")
    worker.register_trigger(
        {
            "type": "http",
            "function_id": PREFIX + "http",
            "config": {"api_path": "interop/python/:item", "http_method": "POST"},
        }
    )
    emit({"event": "ready", "pid": os.getpid(), "worker_id": worker.worker_id})
    try:
        serve(worker)
    finally:
        worker.shutdown()
        emit({"event": "bye"})


if __name__ == "__main__":
    main()
