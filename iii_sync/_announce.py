"""Opening a connection: reattach, announce, replay, then report connected.

On every new socket the worker sends, in order: ``reattach`` with the previous
connection's id and token (after the first connection), the
``engine::workers::register`` call that announces its name and namespace,
and every trigger type, function and trigger it has registered. The state
becomes ``CONNECTED`` when the engine answers the announce; since the engine
handles one connection's frames in order, that answer also means the replay
was applied.
"""

import logging
from typing import TYPE_CHECKING, Any, Dict, Optional

from . import _protocol
from ._errors import ConnectionLostError, FrameValidationError, WorkerClosedError
from ._options import worker_metadata
from ._state import ConnectionState

if TYPE_CHECKING:  # pragma: no cover
    from ._transport import Transport
    from ._worker import Worker

logger = logging.getLogger(__name__)


class Announcer:
    """The worker's identity on the wire, and what is sent on each new socket.

    Threading: every method runs on the worker's connection thread.

    Attributes:
        worker_id: The id the engine gave the current (or last) connection.
    """

    def __init__(self, worker: "Worker") -> None:
        self._worker = worker
        self.worker_id: Optional[str] = None
        self._reattach_token: Optional[str] = None

    def on_open(self, transport: "Transport") -> None:
        """Sends reattach, the announce and the replay on a new socket.

        Raises:
            ConnectionLostError: the socket broke while sending.
        """
        worker = self._worker
        if self.worker_id is not None:
            worker._send_frame(transport, self._reattach_frame())

        worker._pending.open_generation(transport.generation)
        entry = worker._pending_call(
            transport,
            _protocol.REGISTER_WORKER_FUNCTION,
            worker_metadata(worker.options),
            None,
            worker.options.handshake_timeout,
        )
        entry.future.add_done_callback(
            lambda future: self._on_announced(future, transport)
        )
        self._replay(transport)

    def on_worker_registered(self, frame: Dict[str, Any]) -> None:
        """Keeps the id and reattach token of a ``workerregistered`` frame."""
        self.worker_id = _protocol.canonical_uuid(frame["worker_id"])
        self._reattach_token = frame.get("reattach_token")
        logger.debug("worker %s has id %s", self._worker.name, self.worker_id)

    def _reattach_frame(self) -> Dict[str, Any]:
        frame = {"type": _protocol.REATTACH, "previous_worker_id": self.worker_id}
        if self._reattach_token is not None:
            frame["reattach_token"] = self._reattach_token
        return frame

    def _replay(self, transport: "Transport") -> None:
        worker = self._worker
        for registration in worker._registrations.claim_all(transport.generation):
            try:
                worker._send_frame(transport, registration.frame())
            except FrameValidationError as exc:
                # Checked at registration; only a value changed since then
                # (a mutated config dict) can fail here.
                logger.error("%r not replayed: %s", registration, exc)

    def _on_announced(self, future: Any, transport: "Transport") -> None:
        worker = self._worker
        if future.cancelled() or future.exception() is not None:
            error = None if future.cancelled() else future.exception()
            if not isinstance(error, (ConnectionLostError, WorkerClosedError)):
                logger.warning("worker %s: announce failed: %s", worker.name, error)
            return

        worker._connection.mark_registered(transport)
        first = worker.state == ConnectionState.CONNECTING
        logger.info(
            "worker %s %s to %s as %s (namespace %s, %d functions)",
            worker.name,
            "connected" if first else "reconnected",
            worker.options.url,
            self.worker_id,
            worker.namespace or _protocol.DEFAULT_NAMESPACE,
            len(worker._registrations.function_ids()),
        )
        worker._state.set(ConnectionState.CONNECTED)
        worker._flush_offline(transport)
