"""What the engine accepts from a worker, frame by frame.

The real engine parses each WebSocket message with serde into its ``Message``
enum and silently drops what does not parse (engine-protocol §1.3, §1.5). The
rules are encoded in the ``to_engine`` JSON Schemas; this module adds the
transport-level ones: blank text frames are skipped, telemetry binary frames
are swallowed, other binary frames must be UTF-8 JSON, and duplicate keys are
refused where serde refuses them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

from .. import _protocol
from .._validation import TO_ENGINE, TO_WORKER, find_error

# The characters Rust's str::trim() removes (Unicode White_Space). Python's
# str.strip() would also remove U+001C..U+001F, which serde does not skip.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

# Frames only the engine sends; a worker may send them and the engine parses
# and then ignores them (engine-protocol §2.1), so they are checked against
# the engine-to-worker schemas.
_ENGINE_ONLY_TYPES = (_protocol.WORKERREGISTERED, _protocol.REGISTRATIONREJECTED)


class FrameRefusedError(Exception):
    """The engine would drop this frame.

    Attributes:
        frame_type: The frame's ``type`` when it has a string one, else None.
        reason: Why it is dropped, for the log line.
    """

    def __init__(self, frame_type: Optional[str], reason: str) -> None:
        super().__init__(reason)
        self.frame_type = frame_type
        self.reason = reason


def decode_frame(message: Union[str, bytes]) -> Optional[Dict[str, Any]]:
    """Decodes one WebSocket message from a worker.

    Thread-safe and pure. Returns the frame, or None for a message that is
    skipped without a word (blank text, telemetry).

    Raises:
        FrameRefusedError: the real engine would log and drop this message.
    """
    if isinstance(message, bytes):
        text = _binary_text(message)
        if text is None:
            return None
    else:
        if not message.strip(_WHITESPACE):
            return None
        text = message

    frame = _parse(text)
    _check(frame)
    _check_timeout(frame)
    return frame


def is_telemetry(message: bytes) -> bool:
    """True for a binary frame tagged ``OTLP``, ``MTRC`` or ``LOGS`` (§1.1)."""
    return message[:4] in _protocol.TELEMETRY_TAGS


def _binary_text(message: bytes) -> Optional[str]:
    if is_telemetry(message):
        return None
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameRefusedError(
            None, "binary frame is neither telemetry nor UTF-8 JSON"
        ) from None


def _parse(text: str) -> Any:
    try:
        return _protocol.decode(text)
    except _protocol.DuplicateKeyError:
        return _parse_tolerating_free_form_duplicates(text)
    except (ValueError, RecursionError) as exc:
        raise FrameRefusedError(None, f"not JSON: {exc}") from None


def _check(frame: Any) -> None:
    frame_type = frame.get("type") if isinstance(frame, dict) else None
    direction = TO_WORKER if frame_type in _ENGINE_ONLY_TYPES else TO_ENGINE
    error = find_error(frame, direction)
    if error is not None:
        raise FrameRefusedError(error.frame_type, f"{error.path}: {error.reason}")


def _check_timeout(frame: Dict[str, Any]) -> None:
    # serde reads timeout_ms as a u64: a float (1.0, or -0, which it parses
    # as -0.0) or a number past 2**64 - 1 fails the frame, where the schema's
    # "integer" lets whole floats through.
    if frame["type"] != _protocol.REGISTERFUNCTION:
        return
    invocation = frame.get("invocation")
    timeout = invocation.get("timeout_ms") if invocation else None
    if timeout is None or (type(timeout) is int and 0 <= timeout < 1 << 64):
        return
    reason = "$.invocation.timeout_ms: %r is not an unsigned 64-bit integer"
    raise FrameRefusedError(_protocol.REGISTERFUNCTION, reason % (timeout,))


class _DuplicateRecorder:
    """An ``object_pairs_hook`` that keeps the last value and notes repeats."""

    def __init__(self) -> None:
        self.repeated: List[Dict[str, Any]] = []

    def __call__(self, pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            self.repeated.append(result)
        return result


def _parse_tolerating_free_form_duplicates(text: str) -> Any:
    # serde refuses a repeated field of a struct (the frame, its error body,
    # its action, its invocation and auth), but a free-form value such as
    # `data` or `config` keeps the last one (engine-protocol, errata).
    # Every other rule of the codec still applies.
    recorder = _DuplicateRecorder()
    try:
        frame = _protocol.decode(text, object_pairs_hook=recorder)
    except (ValueError, RecursionError) as exc:
        raise FrameRefusedError(None, f"not JSON: {exc}") from None

    repeated_ids = {id(obj) for obj in recorder.repeated}
    if any(id(obj) in repeated_ids for obj in _structural_objects(frame)):
        frame_type = frame.get("type") if isinstance(frame, dict) else None
        raise FrameRefusedError(
            frame_type if isinstance(frame_type, str) else None, "duplicate key"
        )
    return frame


def _structural_objects(frame: Any) -> List[Any]:
    if not isinstance(frame, dict):
        return [frame]
    invocation = frame.get("invocation")
    auth = invocation.get("auth") if isinstance(invocation, dict) else None
    return [frame, frame.get("error"), frame.get("action"), invocation, auth]
