"""Fire-and-forget frames that wait for a connection.

Bounded: when full, :meth:`OfflineQueue.put` raises to the caller instead of
dropping anything silently. Frames are sent in the order they were queued.
"""

import collections
import logging
import threading
from typing import Callable, Deque

from ._errors import ConnectionLostError, IIIError

logger = logging.getLogger(__name__)


class OfflineQueue:
    """A bounded FIFO of encoded frames. Thread-safe."""

    def __init__(self, limit: int) -> None:
        self._limit = limit

        # Guards _frames and _draining.
        self._frames_lock = threading.Lock()
        self._frames: Deque[bytes] = collections.deque()
        self._draining = False

    def __len__(self) -> int:
        with self._frames_lock:
            return len(self._frames)

    def put(self, text: bytes, function_id: str) -> None:
        """Queues one frame.

        Raises:
            ConnectionLostError: the queue is full; the frame is not kept.
        """
        with self._frames_lock:
            if len(self._frames) >= self._limit:
                raise ConnectionLostError(
                    "not connected and %d frames already wait; %s not queued"
                    % (len(self._frames), function_id),
                    function_id=function_id,
                )
            self._frames.append(text)

    def drain(self, send: Callable[[bytes], None]) -> None:
        """Sends frames in order until empty or ``send`` raises.

        One thread drains at a time; another caller returns at once and the
        draining thread also sends what it queued. A frame whose send raised
        ``ConnectionLostError`` goes back to the front, for the next
        connection.
        """
        with self._frames_lock:
            if self._draining:
                return
            self._draining = True

        while True:
            # Emptiness and the end of draining are decided under one lock,
            # so a frame queued meanwhile is never left behind.
            with self._frames_lock:
                if not self._frames:
                    self._draining = False
                    return
                text = self._frames.popleft()
            sent = False
            try:
                send(text)
                sent = True
            except ConnectionLostError:
                return
            finally:
                if not sent:
                    self._put_back(text)

    def _put_back(self, text: bytes) -> None:
        with self._frames_lock:
            self._frames.appendleft(text)
            self._draining = False

    @property
    def empty(self) -> bool:
        with self._frames_lock:
            return not self._frames and not self._draining

    def clear(self, error: IIIError) -> None:
        """Forgets every frame, with a WARNING that says how many and why."""
        with self._frames_lock:
            dropped = len(self._frames)
            self._frames.clear()
        if dropped:
            logger.warning(
                "%d queued fire-and-forget call(s) not sent: %s", dropped, error
            )
