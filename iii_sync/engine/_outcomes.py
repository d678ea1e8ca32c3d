"""Outcomes of invocations and how they reach a waiting worker.

An outcome is ``(result, error body)``; the error wins when both are set
(engine-protocol §4.6). A worker caller is answered with an
``invocationresult`` that omits a null result (§4.2) and echoes the caller's
``traceparent`` and ``baggage``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional, Tuple

from .. import _protocol
from ._providers import CallFailed
from ._registry import Frame, FunctionEntry, Registry, UnsendableFrameError, Worker

logger = logging.getLogger(__name__)

# (result, error body); exactly one of them is meaningful.
Outcome = Tuple[Any, Optional[Dict[str, Any]]]
OnDone = Callable[[Outcome], None]


def error_body(code: str, message: str) -> Dict[str, Any]:
    """An ``invocationresult`` error object."""
    return {"code": code, "message": message}


def run_builtin(entry: FunctionEntry, data: Any) -> Outcome:
    """Runs a builtin on the calling thread and captures its outcome."""
    assert entry.builtin is not None
    try:
        return entry.builtin(data), None
    except CallFailed as exc:
        return None, error_body(exc.code, exc.message)
    except Exception as exc:
        logger.exception("builtin %s failed", entry.function_id)
        return None, error_body("invocation_failed", str(exc))


def result_frame(
    invocation_id: str, function_id: str, outcome: Outcome, request: Any = None
) -> Frame:
    """An ``invocationresult``; a null result is omitted, error wins (§4.2)."""
    frame: Frame = {
        "type": _protocol.INVOCATIONRESULT,
        "invocation_id": invocation_id,
        "function_id": function_id,
    }
    result, error = outcome
    if error is not None:
        frame["error"] = error
    elif result is not None:
        frame["result"] = result
    if request:
        copy_present(request, frame, ("traceparent", "baggage"))
    return frame


class WorkerReply:
    """Answers a worker caller once the outcome is known."""

    def __init__(
        self,
        registry: Registry,
        caller: Worker,
        invocation_id: str,
        function_id: str,
        request: Frame,
    ) -> None:
        self._registry = registry
        self._caller = caller
        self._invocation_id = invocation_id
        self._function_id = function_id
        self._trace = {k: request.get(k) for k in ("traceparent", "baggage")}

    def __call__(self, outcome: Outcome) -> None:
        self._registry.untrack(self._caller.id, self._invocation_id)
        frame = result_frame(
            self._invocation_id, self._function_id, outcome, self._trace
        )
        try:
            sent = self._caller.deliver(frame)
        except UnsendableFrameError as exc:
            sent = self._send_unsendable(exc)
        if not sent:
            logger.debug(
                "caller %s is gone; dropped result of %s",
                self._caller.id,
                self._invocation_id,
            )

    def _send_unsendable(self, exc: UnsendableFrameError) -> bool:
        # The caller still gets an answer: an error in place of the result.
        logger.warning(
            "could not send the result of %s to worker %s: %s",
            self._invocation_id,
            self._caller.label,
            exc,
        )
        message = f"the engine could not encode the result of {self._function_id}"
        failure = error_body(_protocol.INVOCATION_FAILED, f"{message}: {exc}")
        frame = result_frame(
            self._invocation_id, self._function_id, (None, failure), self._trace
        )
        return self._caller.send(frame)


def unwrap(outcome: Outcome) -> Any:
    """The result, or CallFailed for an error outcome."""
    result, error = outcome
    if error is not None:
        raise CallFailed(str(error.get("code")), str(error.get("message")))
    return result


def copy_present(source: Any, target: Frame, keys: Tuple[str, ...]) -> None:
    """Copies the keys whose value is not None."""
    for key in keys:
        value = source.get(key)
        if value is not None:
            target[key] = value
