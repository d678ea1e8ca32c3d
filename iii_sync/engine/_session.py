"""One worker connection: its read loop, dispatch table and outbound side.

Frames from one connection are handled in order on that connection's thread
(engine-protocol §1.3). Registration frames go through the namespace gate;
``invokefunction`` is routed without waiting for the target; nothing a frame
contains closes the connection.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any, Callable, Dict, Optional, cast

from websockets.exceptions import ConnectionClosed

from .. import _protocol
from ._decode import FrameRefusedError, decode_frame
from ._lifecycle import Lifecycle
from ._registration import HELD_TYPES
from ._registry import Frame, Outbound, UnsendableFrameError, Worker
from ._router import Router
from ._triggers import TriggerRegistry

logger = logging.getLogger(__name__)


class WebSocketOutbound(Outbound):
    """Sends frames on a ``websockets`` sync connection.

    ``websockets`` serialises concurrent sends itself, so frames to one worker
    leave in the order their senders got there (§1.4).

    A frame the shared codec refuses is not sent (``UnsendableFrameError``). One
    deviation follows: a value the engine wraps deeper, such as an HTTP body
    nested 127 levels, ends beyond the codec's depth limit; the real engine's
    serializer has no such limit and would send it.
    """

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def send(self, frame: Frame) -> bool:
        # Encoding first keeps a bad frame from reaching websockets, which
        # would close the connection over it.
        try:
            text = _protocol.encode(frame)
        except UnicodeEncodeError:
            raise UnsendableFrameError("a string holds a lone surrogate") from None
        except ValueError as exc:
            raise UnsendableFrameError(str(exc)) from None
        try:
            self._connection.send(text)
        except (ConnectionClosed, OSError, RuntimeError):
            return False
        return True

    def close(self) -> None:
        # A code of None sends a Close frame with an empty body (no status
        # code), as the engine does after WORKER_NAMESPACE_CONFLICT (§3.4).
        try:
            self._connection.close(cast(int, None))
        except (ConnectionClosed, OSError, RuntimeError):
            pass

    def abort(self) -> None:
        try:
            self._connection.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Session:
    """Serves one ``/`` connection until it closes.

    Args:
        connection: The ``websockets`` server connection.
        lifecycle, router, triggers: The engine parts frames are handed to.
    """

    def __init__(
        self,
        connection: Any,
        lifecycle: Lifecycle,
        router: Router,
        triggers: TriggerRegistry,
    ) -> None:
        self._connection = connection
        self._lifecycle = lifecycle
        self._router = router
        self._triggers = triggers
        self._handlers: Dict[str, Callable[[Frame], None]] = {
            frame_type: getattr(self, "_handle_" + frame_type)
            for frame_type in _DISPATCHED
        }
        self.worker: Optional[Worker] = None

    def run(self) -> None:
        """Accepts the worker, reads frames until the connection ends, cleans up.

        Runs on the connection's own thread and blocks until the peer
        disconnects, is evicted, or the engine stops.
        """
        address = getattr(self._connection, "remote_address", None)
        ip_address = address[0] if isinstance(address, tuple) else None
        worker = self._lifecycle.accept(WebSocketOutbound(self._connection), ip_address)
        self.worker = worker
        threading.current_thread().name = f"iii-engine-conn-{worker.id[:8]}"
        try:
            self._read_loop(worker)
        finally:
            self._lifecycle.teardown(worker)

    def _read_loop(self, worker: Worker) -> None:
        while True:
            try:
                message = self._connection.recv()
            except (ConnectionClosed, OSError, EOFError):
                return
            self._handle_message(worker, message)

    def _handle_message(self, worker: Worker, message: Any) -> None:
        try:
            frame = decode_frame(message)
        except FrameRefusedError as refused:
            logger.warning(
                "dropped %s frame from worker %s: %s",
                refused.frame_type or "untyped",
                worker.label,
                refused.reason,
            )
            return
        if frame is None:
            return

        frame_type = frame["type"]
        logger.debug("frame %s from %s", frame_type, worker.id)
        if frame_type in HELD_TYPES:
            worker.gate.submit(frame)
            return
        try:
            self._handlers[frame_type](frame)
        except Exception:
            # §1.3: no frame closes the connection.
            logger.exception("handling %s from %s failed", frame_type, worker.id)

    # Dispatch table: one handler per frame type that is not held back.

    def _handle_invokefunction(self, frame: Frame) -> None:
        assert self.worker is not None
        self._router.invoke_from_worker(self.worker, frame)

    def _handle_invocationresult(self, frame: Frame) -> None:
        assert self.worker is not None
        self._router.handle_result(self.worker, frame)

    def _handle_triggerregistrationresult(self, frame: Frame) -> None:
        assert self.worker is not None
        self._triggers.handle_result(self.worker.id, frame)

    def _handle_reattach(self, frame: Frame) -> None:
        assert self.worker is not None
        self._lifecycle.reattach(self.worker, frame)

    def _handle_ping(self, frame: Frame) -> None:
        assert self.worker is not None
        self.worker.send({"type": _protocol.PONG})

    def _handle_pong(self, frame: Frame) -> None:
        pass

    def _handle_workerregistered(self, frame: Frame) -> None:
        # §2.1: parsed, then ignored.
        pass

    def _handle_registrationrejected(self, frame: Frame) -> None:
        pass


_DISPATCHED = (
    _protocol.INVOKEFUNCTION,
    _protocol.INVOCATIONRESULT,
    _protocol.TRIGGERREGISTRATIONRESULT,
    _protocol.REATTACH,
    _protocol.PING,
    _protocol.PONG,
    _protocol.WORKERREGISTERED,
    _protocol.REGISTRATIONREJECTED,
)


def serve_telemetry(connection: Any) -> None:
    """The ``/otel`` session: reads and discards everything (§1.1)."""
    while True:
        try:
            connection.recv()
        except (ConnectionClosed, OSError, EOFError):
            return
