"""Invocation routing: worker calls, in-process calls, results, halts.

Nothing here waits on a connection thread. A call to a worker's function
sends ``invokefunction`` to the target and files a pending entry whose
callback runs when the target's ``invocationresult`` arrives (on the
target's connection thread) or when a connection goes away. Builtins run on
the engine's call pool. Only :meth:`Router.call`, the in-process path used
by trigger providers, blocks, and it is never called from a connection
thread. Rules: engine-protocol §4.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor
from typing import Any, Dict, Optional

from .. import _protocol
from ._outcomes import (
    OnDone,
    Outcome,
    WorkerReply,
    copy_present,
    error_body,
    result_frame,
    run_builtin,
    unwrap,
)
from ._providers import CallFailed
from ._registry import Frame, FunctionEntry, Registry, UnsendableFrameError, Worker

logger = logging.getLogger(__name__)

STOPPED: Dict[str, Any] = {
    "code": _protocol.INVOCATION_STOPPED,
    "message": "Invocation stopped",
}
_CHANNEL_CLOSED_SEND = {"code": "channel_send_failed", "message": "channel closed"}
_CHANNEL_CLOSED_WAIT = {"code": "invocation_error", "message": "channel closed"}
_BLANK_NAMESPACE = (
    "`namespace` is empty: it was named and left blank. "
    "Give it a name, or omit it to use `default`."
)
_QUEUE_FUNCTION = "engine::queue::enqueue"
_NO_QUEUE = (
    "No queue provider is installed. `TriggerAction::Enqueue` routes through "
    "the `engine::queue::enqueue` provider, which the standalone queue worker "
    "registers. Add it with `iii worker add queue`. (underlying: Function "
    "engine::queue::enqueue not found in namespace default)"
)


def not_found_message(function_id: str, namespace: str, elsewhere: Any) -> str:
    """The worker-facing ``function_not_found`` text, with its hint (§4.2)."""
    message = f"Function {function_id} not found in namespace {namespace}."
    if elsewhere:
        message += " It is registered in namespace(s): {}.".format(", ".join(elsewhere))
    return message


class _Pending:
    __slots__ = ("function_id", "on_done")

    def __init__(self, function_id: str, on_done: OnDone) -> None:
        self.function_id = function_id
        self.on_done = on_done


class _Waiter:
    """Carries one outcome from a callback to a blocked in-process caller."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome: Outcome = (None, None)

    def set(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.done.set()


class Router:
    """Routes ``invokefunction`` frames and in-process calls to functions.

    Args:
        registry: Where functions and in-flight sets live.
        executor: The call pool that runs builtins.
    """

    def __init__(self, registry: Registry, executor: Executor) -> None:
        self._registry = registry
        self._executor = executor
        # Guards _pending: invocation id -> who waits for the target's result.
        self._pending_lock = threading.Lock()
        self._pending: Dict[str, _Pending] = {}

    # Calls from workers (§4.1-§4.5)

    def invoke_from_worker(self, caller: Worker, frame: Frame) -> None:
        """Handles a caller's ``invokefunction``; never blocks on the target."""
        function_id = frame["function_id"]
        invocation_id = _protocol.canonical_uuid(frame.get("invocation_id"))
        namespace = frame.get("namespace")
        action = (frame.get("action") or {}).get("type")

        # Step 1: a blank namespace is refused before anything else.
        if _protocol.is_blank(namespace):
            self._refuse_blank(caller, invocation_id, function_id)
            return

        namespace = namespace or _protocol.DEFAULT_NAMESPACE
        if action == "enqueue":
            self._enqueue(caller, frame, invocation_id, namespace)
            return

        # Void discards the caller's id; the target still gets a fresh one.
        reply_id = None if action == "void" else invocation_id
        entry = self._registry.lookup(namespace, function_id)
        if entry is None:
            self._reply_not_found(caller, reply_id, function_id, namespace, frame)
            return
        self._route(caller, frame, entry, reply_id)

    def _route(
        self,
        caller: Worker,
        frame: Frame,
        entry: FunctionEntry,
        reply_id: Optional[str],
    ) -> None:
        # §4.5: object data names its caller, whatever the caller put there.
        data = frame["data"]
        if isinstance(data, dict):
            data = dict(data, _caller_worker_id=caller.id)

        on_done = self._silent
        if reply_id is not None:
            self._registry.track(caller.id, reply_id)
            on_done = WorkerReply(
                self._registry, caller, reply_id, frame["function_id"], frame
            )
        logger.debug(
            "routing %s (%s) from %s to %s in %s",
            entry.function_id,
            reply_id or "no reply",
            caller.id,
            entry.owner or "builtin",
            entry.namespace,
        )
        self.dispatch(entry, reply_id or _protocol.new_id(), data, frame, on_done)

    def _refuse_blank(
        self, caller: Worker, invocation_id: Optional[str], function_id: str
    ) -> None:
        if invocation_id is None:
            logger.debug(
                "dropped id-less call of %s with a blank namespace", function_id
            )
            return
        caller.send(
            result_frame(
                invocation_id,
                function_id,
                (None, error_body(_protocol.INVALID_NAMESPACE, _BLANK_NAMESPACE)),
            )
        )

    def _reply_not_found(
        self,
        caller: Worker,
        reply_id: Optional[str],
        function_id: str,
        namespace: str,
        frame: Frame,
    ) -> None:
        logger.debug("%s not found in namespace %s", function_id, namespace)
        if reply_id is None:
            return
        message = not_found_message(
            function_id, namespace, self._registry.namespaces_of(function_id)
        )
        outcome = (None, error_body(_protocol.FUNCTION_NOT_FOUND, message))
        caller.send(result_frame(reply_id, function_id, outcome, frame))

    def _enqueue(
        self,
        caller: Worker,
        frame: Frame,
        invocation_id: Optional[str],
        namespace: str,
    ) -> None:
        # §4.4: no _caller_worker_id, no caller metadata, a receipt of our own.
        receipt = _protocol.new_id()
        request = {
            "queue": frame["action"]["queue"],
            "function_id": frame["function_id"],
            "data": frame["data"],
            "messageReceiptId": receipt,
            "traceparent": frame.get("traceparent"),
            "baggage": _with_function_id(frame.get("baggage"), frame["function_id"]),
        }
        if namespace != _protocol.DEFAULT_NAMESPACE:
            request["namespace"] = namespace

        reply: OnDone = self._silent
        if invocation_id is not None:
            self._registry.track(caller.id, invocation_id)
            reply = WorkerReply(
                self._registry, caller, invocation_id, frame["function_id"], frame
            )
        on_done = _EnqueueReply(reply, receipt)

        entry = self._registry.lookup(_protocol.DEFAULT_NAMESPACE, _QUEUE_FUNCTION)
        if entry is None:
            on_done((None, error_body(_protocol.ENQUEUE_ERROR, _NO_QUEUE)))
            return
        self.dispatch(entry, _protocol.new_id(), request, {}, on_done)

    # Delivery to a target

    def dispatch(
        self,
        entry: FunctionEntry,
        invocation_id: str,
        data: Any,
        extras: Frame,
        on_done: OnDone,
    ) -> None:
        """Starts one invocation of ``entry``; ``on_done`` gets the outcome.

        ``extras`` supplies ``traceparent``, ``baggage`` and ``metadata``.
        Thread-safe; never blocks on the target.
        """
        if entry.builtin is not None:
            self._executor.submit(self._run_builtin, entry, data, on_done)
            return

        target = self._registry.get(entry.owner)
        if target is None or target.tearing_down:
            on_done((None, dict(_CHANNEL_CLOSED_SEND)))
            return

        self._add_pending(invocation_id, _Pending(entry.function_id, on_done))
        self._registry.track(target.id, invocation_id)
        frame = {
            "type": _protocol.INVOKEFUNCTION,
            "invocation_id": invocation_id,
            "function_id": entry.function_id,
            "data": data,
        }
        copy_present(extras, frame, ("traceparent", "baggage", "metadata"))
        try:
            sent = target.deliver(frame)
        except UnsendableFrameError as exc:
            self._abandon(target, invocation_id, _unsendable(entry, target, frame, exc))
            return
        if not sent:
            self._abandon(target, invocation_id, dict(_CHANNEL_CLOSED_SEND))

    def _abandon(
        self, target: Worker, invocation_id: str, error: Dict[str, Any]
    ) -> None:
        # The target never got the call: nothing of it may stay behind.
        self._registry.untrack(target.id, invocation_id)
        self._resolve_pending(invocation_id, (None, error))

    def _run_builtin(self, entry: FunctionEntry, data: Any, on_done: OnDone) -> None:
        on_done(run_builtin(entry, data))

    def _add_pending(self, invocation_id: str, pending: _Pending) -> None:
        with self._pending_lock:
            replaced = self._pending.get(invocation_id)
            self._pending[invocation_id] = pending
        if replaced is not None:
            # §4.6: reusing a pending id fails the earlier waiter.
            replaced.on_done((None, dict(_CHANNEL_CLOSED_WAIT)))

    def _resolve_pending(self, invocation_id: str, outcome: Outcome) -> bool:
        with self._pending_lock:
            pending = self._pending.pop(invocation_id, None)
        if pending is None:
            return False
        pending.on_done(outcome)
        return True

    # Results and halts (§4.6, §3.7)

    def handle_result(self, sender: Worker, frame: Frame) -> None:
        """Resolves a pending invocation from a target's ``invocationresult``."""
        invocation_id = _protocol.canonical_uuid(frame["invocation_id"]) or ""
        self._registry.untrack(sender.id, invocation_id)
        error = frame.get("error")
        outcome = (None, error) if error is not None else (frame.get("result"), None)
        if not self._resolve_pending(invocation_id, outcome):
            logger.debug(
                "result for unknown or finished invocation %s from %s",
                invocation_id,
                sender.id,
            )

    def halt(self, invocation_ids: Any) -> None:
        """Ends each pending id with ``invocation_stopped`` (§3.7 step 3)."""
        for invocation_id in invocation_ids:
            self._resolve_pending(invocation_id, (None, dict(STOPPED)))

    # The in-process call path (FunctionCaller)

    def call(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = _protocol.DEFAULT_NAMESPACE,
        metadata: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Calls a function for a trigger provider and blocks for the result.

        Call from a provider's or the call pool's thread, never from a
        connection thread. The data gets no ``_caller_worker_id`` and a miss
        reads ``Function <id> not found in namespace <ns>`` with no period
        (§4.9).

        Raises:
            CallFailed: the function answered with an error, was not found,
                or (code ``timeout``) did not answer within ``timeout``.
        """
        entry = self._registry.lookup(namespace, function_id)
        if entry is None:
            raise CallFailed(
                _protocol.FUNCTION_NOT_FOUND,
                f"Function {function_id} not found in namespace {namespace}",
            )
        if entry.builtin is not None:
            return unwrap(run_builtin(entry, data))

        waiter = _Waiter()
        invocation_id = _protocol.new_id()
        extras = {"metadata": metadata}
        self.dispatch(entry, invocation_id, data, extras, waiter.set)
        if not waiter.done.wait(timeout):
            with self._pending_lock:
                self._pending.pop(invocation_id, None)
            raise CallFailed(
                "timeout", f"{function_id} did not answer within {timeout}s"
            )
        return unwrap(waiter.outcome)

    @staticmethod
    def _silent(outcome: Outcome) -> None:
        if outcome[1] is not None:
            logger.debug("discarded error of a call nobody waits for: %s", outcome[1])


class _EnqueueReply:
    """Turns the queue provider's outcome into the enqueue answer (§4.4)."""

    def __init__(self, reply: OnDone, receipt: str) -> None:
        self._reply = reply
        self._receipt = receipt

    def __call__(self, outcome: Outcome) -> None:
        error = outcome[1]
        if error is None:
            self._reply(({"messageReceiptId": self._receipt}, None))
            return
        message = error.get("message", "")
        if error.get("code") != _protocol.ENQUEUE_ERROR:
            message = "{}: {}".format(error.get("code"), message)
        self._reply((None, error_body(_protocol.ENQUEUE_ERROR, message)))


def _unsendable(
    entry: FunctionEntry, target: Worker, frame: Frame, exc: Exception
) -> Dict[str, Any]:
    # The caller's error; the target's connection is left as it was.
    logger.warning(
        "could not send invocation %s of %s to worker %s: %s",
        frame["invocation_id"],
        entry.function_id,
        target.label,
        exc,
    )
    message = f"the engine could not encode the call of {entry.function_id}: {exc}"
    return error_body(_protocol.INVOCATION_FAILED, message)


def _with_function_id(baggage: Optional[str], function_id: str) -> Optional[str]:
    # §4.4: the enqueue request's baggage names the target function.
    if baggage is None:
        return None
    entries = [
        e
        for e in baggage.split(",")
        if e.strip() and e.split("=", 1)[0].strip() != "iii.function.id"
    ]
    entries.append(f"iii.function.id={function_id}")
    return ",".join(entries)
