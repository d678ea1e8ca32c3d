"""Inbound frames: decode, validate, and hand each type to its handler.

Runs on the connection thread. Nothing a peer sends can stop it: a frame
that is not UTF-8, not JSON or not valid against its schema is logged at
WARNING with the reason and dropped, and an error inside a handler is logged
with its traceback. Work that runs user code goes to the handler pool.
"""

import logging
from typing import TYPE_CHECKING, Any, Callable, Dict

from . import _protocol, _validation
from ._errors import InvocationError, RegistrationRejectedError
from ._handlers import run_invocation
from ._providing import answer_binding, run_provider
from ._registrations import TriggerConfig

if TYPE_CHECKING:  # pragma: no cover
    from ._transport import Transport
    from ._worker import Worker

logger = logging.getLogger(__name__)

Frame = Dict[str, Any]


class Dispatcher:
    """Routes the engine's frames to the worker. Used by one thread only."""

    def __init__(self, worker: "Worker") -> None:
        self._worker = worker
        self._table: Dict[str, Callable[[Frame, Transport], None]] = {
            name[len("_handle_") :]: getattr(self, name)
            for name in dir(self)
            if name.startswith("_handle_")
        }

    def dispatch(self, payload: bytes, transport: "Transport") -> None:
        """Handles one text message received on ``transport``. Never raises."""
        frame = self._parse(payload)
        if frame is None:
            return

        logger.debug("received %s %s", frame["type"], _ids(frame))
        try:
            self._table[frame["type"]](frame, transport)
        except Exception:
            logger.exception("error while handling a %s frame; dropped", frame["type"])

    def _parse(self, payload: bytes) -> Any:
        try:
            frame = _protocol.decode(payload.decode("utf-8"))
        except UnicodeDecodeError as exc:
            logger.warning("dropped a frame that is not UTF-8: %s", exc)
            return None
        except ValueError as exc:
            logger.warning("dropped a frame that is not JSON: %s", exc)
            return None

        error = _validation.find_error(frame, _validation.TO_WORKER)
        if error is not None:
            logger.warning("dropped an invalid frame: %s", error)
            return None
        return frame

    def _handle_workerregistered(self, frame: Frame, transport: "Transport") -> None:
        self._worker._announcer.on_worker_registered(frame)

    def _handle_invokefunction(self, frame: Frame, transport: "Transport") -> None:
        worker = self._worker
        function = worker._registrations.function(frame["function_id"])
        if function is None:
            self._refuse(
                frame,
                transport,
                _protocol.FUNCTION_NOT_FOUND,
                "Function '%s' not found" % frame["function_id"],
            )
            return
        if worker._closing:
            self._refuse(
                frame,
                transport,
                "worker_closing",
                "worker %s is shutting down" % worker.name,
            )
            return

        def job() -> None:
            text = run_invocation(
                function.adapter, frame, worker, worker.options.max_message_size
            )
            if text is not None:
                worker._send_result(transport, frame, text)

        if not worker._pool.submit(job):
            self._refuse(
                frame,
                transport,
                _protocol.WORKER_OVERLOADED,
                "worker %s has %d invocations waiting"
                % (worker.name, worker.options.max_queued),
            )

    def _refuse(
        self, frame: Frame, transport: "Transport", code: str, message: str
    ) -> None:
        invocation_id = frame.get("invocation_id")
        logger.warning(
            "refused %s (invocation %s): %s",
            frame["function_id"],
            invocation_id,
            message,
        )
        if invocation_id is None:
            return
        reply = {
            "type": _protocol.INVOCATIONRESULT,
            "invocation_id": invocation_id,
            "function_id": frame["function_id"],
            "error": {"code": code, "message": message},
        }
        self._worker._send_result(transport, frame, _protocol.encode_bytes(reply))

    def _handle_invocationresult(self, frame: Frame, transport: "Transport") -> None:
        invocation_id = _protocol.canonical_uuid(frame["invocation_id"])
        if invocation_id is None or not self._worker._pending.resolve(
            invocation_id, frame
        ):
            logger.debug(
                "result for unknown or expired call %s dropped", frame["invocation_id"]
            )

    def _handle_registertrigger(self, frame: Frame, transport: "Transport") -> None:
        self._run_provider(frame, transport, register=True)

    def _handle_unregistertrigger(self, frame: Frame, transport: "Transport") -> None:
        self._run_provider(frame, transport, register=False)

    def _run_provider(
        self, frame: Frame, transport: "Transport", register: bool
    ) -> None:
        worker = self._worker
        type_id = frame.get("trigger_type") or ""
        provided = worker._registrations.trigger_type(type_id)
        if provided is None:
            logger.warning(
                "engine relayed trigger %s of type %r, which this "
                "worker does not provide",
                frame["id"],
                type_id,
            )
            if register:
                answer_binding(
                    worker,
                    transport,
                    frame,
                    _protocol.TRIGGER_TYPE_NOT_FOUND,
                    "Trigger type not found",
                )
            return

        config = TriggerConfig(frame)

        def job() -> None:
            run_provider(worker, provided, config, transport, register)

        if not worker._pool.submit(job):
            logger.warning("no handler thread free for trigger %s", frame["id"])
            if register:
                answer_binding(
                    worker,
                    transport,
                    frame,
                    _protocol.WORKER_OVERLOADED,
                    "worker is overloaded",
                )

    def _handle_triggerregistrationresult(
        self, frame: Frame, transport: "Transport"
    ) -> None:
        error = frame.get("error")
        trigger = self._worker._registrations.trigger(frame["id"])
        if error is None:
            return
        refusal = InvocationError.from_body(error, frame.get("function_id"))
        logger.warning(
            "engine refused trigger %s (%s -> %s): %s",
            frame["id"],
            frame.get("trigger_type"),
            frame.get("function_id"),
            refusal,
        )
        if trigger is not None:
            trigger._refused(refusal)

    def _handle_registrationrejected(
        self, frame: Frame, transport: "Transport"
    ) -> None:
        code = frame["code"]
        error = RegistrationRejectedError(
            code,
            frame.get("namespace"),
            worker_name=frame.get("worker_name"),
            function_id=frame.get("function_id"),
            owner_worker_id=frame.get("owner_worker_id"),
        )
        if code == _protocol.FUNCTION_NAMESPACE_CONFLICT:
            logger.warning(
                "engine refused function %s in namespace %s: owned by worker %s",
                frame.get("function_id"),
                frame.get("namespace"),
                frame.get("owner_worker_id") or "<engine>",
            )
            function = self._worker._registrations.function(
                frame.get("function_id") or ""
            )
            if function is not None:
                function._refused(error)
            return
        self._worker._fail(error)

    def _handle_error(self, frame: Frame, transport: "Transport") -> None:
        body = frame["error"]
        self._worker._fail(RegistrationRejectedError(body["code"]))
        logger.error(
            "engine refused the connection: %s: %s", body["code"], body["message"]
        )

    def _handle_pong(self, frame: Frame, transport: "Transport") -> None:
        """Liveness is kept by WebSocket pings; a JSON pong needs nothing."""


def _ids(frame: Frame) -> str:
    parts = [
        str(frame[k]) for k in ("function_id", "invocation_id", "id") if k in frame
    ]
    return " ".join(parts)
