"""Running a user's handler for one invocation and framing its answer.

Handlers are plain callables. Which arguments they get is decided once, at
registration, from their signature:

- ``handler(data)``;
- ``handler(data, metadata)``, or any handler with a parameter named
  ``metadata``, gets the invocation's metadata;
- a parameter named ``context`` gets an :class:`InvocationContext`.

Whatever happens inside, the engine gets exactly one ``invocationresult``:
the result, the code of an :class:`InvocationError`, ``invocation_failed``
with the stack trace for any other exception, or an error that says why the
result could not be sent (not JSON, too large).
"""

import inspect
import logging
import threading
import traceback
from typing import Any, Callable, Dict, Optional

from . import _protocol, _validation
from ._errors import InvocationError

logger = logging.getLogger(__name__)

# Made on first use, after gevent (if any) has patched threading, so that it
# is a greenlet-local in gevent mode.
_current: Optional[threading.local] = None
# Guards the creation of _current; held for no more than that.
_current_lock = threading.Lock()


def _store() -> threading.local:
    global _current
    if _current is None:
        with _current_lock:
            if _current is None:
                _current = threading.local()
    return _current


class InvocationContext:
    """What a handler may want to know about the invocation it serves.

    Attributes:
        invocation_id: The invocation's UUID.
        function_id: The function being invoked.
        metadata: The caller's or the trigger's metadata, or None.
        caller_worker_id: The calling worker's UUID when a worker called
            (the engine adds it to object payloads); None for triggers.
        traceparent: The W3C trace header, when the caller sent one.
        baggage: The W3C baggage header, when the caller sent one.
        worker: The :class:`~iii_sync.Worker` running the handler.
    """

    __slots__ = (
        "invocation_id",
        "function_id",
        "metadata",
        "caller_worker_id",
        "traceparent",
        "baggage",
        "worker",
    )

    def __init__(self, frame: Dict[str, Any], worker: Any) -> None:
        data = frame.get("data")
        caller = data.get("_caller_worker_id") if isinstance(data, dict) else None
        self.invocation_id: Optional[str] = frame.get("invocation_id")
        self.function_id: str = frame["function_id"]
        self.metadata = frame.get("metadata")
        self.caller_worker_id = caller if isinstance(caller, str) else None
        self.traceparent: Optional[str] = frame.get("traceparent")
        self.baggage: Optional[str] = frame.get("baggage")
        self.worker = worker

    def __repr__(self) -> str:
        return "InvocationContext(%s, %s)" % (self.function_id, self.invocation_id)


def current_invocation() -> Optional[InvocationContext]:
    """The invocation the calling thread is serving, or None outside handlers."""
    return getattr(_store(), "context", None)


class HandlerAdapter:
    """Calls a user handler with the arguments its signature asks for."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        if not callable(handler):
            raise TypeError("handler must be callable, not %r" % (handler,))
        self.handler = handler
        self._wants_data, self._metadata_how, self._wants_context = _inspect(handler)

    def __call__(self, data: Any, context: InvocationContext) -> Any:
        args = [data] if self._wants_data else []
        kwargs: Dict[str, Any] = {}
        if self._metadata_how == "positional":
            args.append(context.metadata)
        elif self._metadata_how == "keyword":
            kwargs["metadata"] = context.metadata
        if self._wants_context:
            kwargs["context"] = context
        return self.handler(*args, **kwargs)


def _inspect(handler: Callable[..., Any]) -> Any:
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return True, None, False

    names = {p.name for p in params}
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    positional = [p for p in positional if p.name not in ("metadata", "context")]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    wants_data = bool(positional) or varargs

    if "metadata" in names:
        metadata_how: Optional[str] = "keyword"
    elif len(positional) >= 2 and positional[1].default is inspect.Parameter.empty:
        metadata_how = "positional"
    else:
        metadata_how = None
    return wants_data, metadata_how, "context" in names


def run_invocation(
    adapter: HandlerAdapter, frame: Dict[str, Any], worker: Any, max_message_size: int
) -> Optional[bytes]:
    """Runs one handler and returns the encoded ``invocationresult`` to send.

    Returns None when the invocation carries no id (nobody waits for it).
    Never raises: every failure becomes an error result.
    """
    context = InvocationContext(frame, worker)
    store = _store()
    store.context = context
    try:
        body = _call(adapter, frame.get("data"), context)
    finally:
        store.context = None

    if context.invocation_id is None:
        return None
    return encode_result(
        context.invocation_id, context.function_id, body, max_message_size
    )


def _call(
    adapter: HandlerAdapter, data: Any, context: InvocationContext
) -> Dict[str, Any]:
    try:
        return {"result": adapter(data, context)}
    except InvocationError as exc:
        return {"error": _error_body(exc.code, exc.message, exc.stacktrace)}
    except BaseException as exc:  # SystemExit too: a handler cannot stop us.
        logger.exception(
            "handler of %s raised (invocation %s)",
            context.function_id,
            context.invocation_id,
        )
        return {
            "error": _error_body(
                _protocol.INVOCATION_FAILED,
                _describe(exc),
                _format_traceback(),
            )
        }


def _describe(exc: BaseException) -> str:
    # The exception's text, as the official SDKs send it; the type is in the
    # stack trace. An empty text names the type.
    return _safe_str(exc) or type(exc).__name__


def _format_traceback() -> str:
    try:
        return traceback.format_exc()
    except Exception:
        return "<traceback unavailable>"


def _error_body(
    code: Any, message: Any, stacktrace: Optional[str] = None
) -> Dict[str, Any]:
    body = {"code": _clean(code), "message": _clean(message)}
    if stacktrace:
        body["stacktrace"] = _clean(stacktrace)
    return body


def _clean(value: Any) -> str:
    # An error text must always be sendable: lone surrogates (from
    # undecodable file names, say) become replacement characters.
    text = value if isinstance(value, str) else _safe_str(value)
    return text.encode("utf-8", "replace").decode("utf-8")


def _safe_str(value: Any) -> str:
    # str() runs user code (__str__), which may itself raise.
    try:
        return str(value)
    except Exception:
        return type(value).__name__


def encode_result(
    invocation_id: str, function_id: str, body: Dict[str, Any], max_message_size: int
) -> bytes:
    """Encodes an ``invocationresult``, replacing what cannot be sent by an error.

    Never raises: a result that is not JSON (or nested too deep, or holds a
    lone surrogate) becomes ``result_not_serializable``, one over the size
    limit ``payload_too_large``.
    """
    frame = {
        "type": _protocol.INVOCATIONRESULT,
        "invocation_id": invocation_id,
        "function_id": function_id,
    }
    frame.update(body)
    try:
        _validation.check(frame, _validation.TO_ENGINE)
        data = _protocol.encode_bytes(frame)
    except Exception as exc:
        logger.warning(
            "result of %s (invocation %s) cannot be sent: %s",
            function_id,
            invocation_id,
            exc,
        )
        return _fallback(
            frame,
            _protocol.RESULT_NOT_SERIALIZABLE,
            "result is not JSON-serialisable: %s" % _describe(exc),
        )

    if len(data) > max_message_size:
        logger.warning(
            "result of %s (invocation %s) exceeds %d bytes",
            function_id,
            invocation_id,
            max_message_size,
        )
        return _fallback(
            frame,
            _protocol.PAYLOAD_TOO_LARGE,
            "result exceeds the %d-byte message limit" % max_message_size,
        )
    return data


def _fallback(frame: Dict[str, Any], code: str, message: str) -> bytes:
    frame.pop("result", None)
    frame["error"] = _error_body(code, message)
    return _protocol.encode_bytes(frame)
