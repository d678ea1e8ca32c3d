"""Wire vocabulary shared by the worker client and the embedded engine.

Frame types, error codes, the JSON codec and UUID handling live here so that
both sides of the protocol spell them the same way. The rules follow the
engine's own decoder (see ``engine-protocol.md`` §1.5 in the project notes):
JSON text, one object per frame, compact UTF-8 on the way out.
"""

import json
import math
import re
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

DEFAULT_ENGINE_URL = "ws://127.0.0.1:49134"

# The engine's own limit on one WebSocket message (axum/tungstenite default).
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

# Frame types, by direction. Both sides send invokefunction, invocationresult,
# registertrigger, unregistertrigger and triggerregistrationresult.
WORKERREGISTERED = "workerregistered"
REGISTRATIONREJECTED = "registrationrejected"
INVOKEFUNCTION = "invokefunction"
INVOCATIONRESULT = "invocationresult"
REGISTERFUNCTION = "registerfunction"
UNREGISTERFUNCTION = "unregisterfunction"
REGISTERSERVICE = "registerservice"
REGISTERTRIGGER = "registertrigger"
UNREGISTERTRIGGER = "unregistertrigger"
REGISTERTRIGGERTYPE = "registertriggertype"
TRIGGERREGISTRATIONRESULT = "triggerregistrationresult"
REATTACH = "reattach"
PING = "ping"
PONG = "pong"

# Error codes that appear in invocationresult.error.code.
FUNCTION_NOT_FOUND = "function_not_found"
INVOCATION_FAILED = "invocation_failed"
INVOCATION_STOPPED = "invocation_stopped"
INVALID_NAMESPACE = "INVALID_NAMESPACE"
ENQUEUE_ERROR = "enqueue_error"
TRIGGER_REGISTRATION_FAILED = "trigger_registration_failed"
TRIGGER_TYPE_NOT_FOUND = "trigger_type_not_found"
RESULT_NOT_SERIALIZABLE = "result_not_serializable"
PAYLOAD_TOO_LARGE = "payload_too_large"
WORKER_OVERLOADED = "worker_overloaded"

# registrationrejected codes.
FUNCTION_NAMESPACE_CONFLICT = "FUNCTION_NAMESPACE_CONFLICT"
WORKER_NAMESPACE_CONFLICT = "WORKER_NAMESPACE_CONFLICT"

DEFAULT_NAMESPACE = "default"
ENGINE_PREFIX = "engine::"
REGISTER_WORKER_FUNCTION = "engine::workers::register"
OTEL_PATH = "/otel"
TELEMETRY_TAGS = (b"OTLP", b"MTRC", b"LOGS")


class DuplicateKeyError(ValueError):
    """An object names the same key twice."""


# The engine's JSON parser (serde_json) refuses nesting deeper than this.
MAX_DEPTH = 127

# A run of 309 digits is the shortest integer a double cannot hold; only a
# text with such a run needs the walk that finds it.
_LONG_DIGITS = re.compile(rb"[0-9]{309}")

_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def encode_bytes(frame: Dict[str, Any]) -> bytes:
    """Serialises a frame as compact UTF-8 JSON, refusing what the engine refuses.

    Raises:
        ValueError: a value is not JSON (``NaN``, infinities, a set, an
            object), a string holds a lone surrogate, or the frame is nested
            deeper than :data:`MAX_DEPTH`.
    """
    try:
        text = json.dumps(
            frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    except RecursionError:
        raise ValueError("nested deeper than %d levels" % MAX_DEPTH) from None
    except TypeError as exc:
        raise ValueError("not JSON: %s" % exc) from exc
    data = text.encode("utf-8")
    _check_depth(data, frame)
    if _LONG_DIGITS.search(data) and _has_huge_int(frame):
        raise ValueError("an integer is beyond the range of a double")
    return data


def encode(frame: Dict[str, Any]) -> str:
    """Like :func:`encode_bytes`, as text."""
    return encode_bytes(frame).decode("utf-8")


# Builds one JSON object from its key/value pairs, as ``json.loads`` calls it.
PairsHook = Callable[[List[Tuple[str, Any]]], Any]


def decode(text: str, object_pairs_hook: Optional[PairsHook] = None) -> Any:
    """Parses a frame's JSON text as the engine's parser does.

    Leading and trailing white space is allowed. Refused: a key named twice
    in any object (the engine refuses that only in a frame's own fields; its
    stand-in re-parses to tolerate the rest), a byte-order mark, ``NaN``,
    numbers beyond a double, escapes of lone surrogates, nesting deeper than
    :data:`MAX_DEPTH`, and trailing garbage.

    Args:
        text: The JSON text.
        object_pairs_hook: Builds each object in place of the default, which
            refuses a repeated key; ``dict`` keeps the last value, as serde
            does for a free-form value. Every other rule still applies.

    Raises:
        ValueError: the text is not one acceptable JSON value
            (``DuplicateKeyError`` for a repeated key).
    """
    try:
        value = json.loads(
            text,
            object_pairs_hook=object_pairs_hook or _reject_duplicates,
            parse_constant=_refuse_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except RecursionError:
        raise ValueError("nested deeper than %d levels" % MAX_DEPTH) from None

    _check_depth(text, value)
    if _LONE_SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise ValueError("a string holds a lone surrogate")
    return value


def _reject_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise DuplicateKeyError("a key is named twice")
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError("%s is not JSON" % name)


def _parse_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError("number out of range: %s" % text[:40])
    return number


def _parse_int(text: str) -> Any:
    # serde reads "-0" as the float -0.0, which no integer field accepts.
    if text == "-0":
        return -0.0
    number = int(text)
    if len(text) > 300:
        try:
            float(number)
        except OverflowError:
            raise ValueError("number out of range: %s..." % text[:40]) from None
    return number


def _check_depth(text: Any, value: Any) -> None:
    # Counting brackets in the text (str or bytes) bounds the depth cheaply;
    # only a text with many of them needs the walk.
    opening = ("[", "{") if isinstance(text, str) else (b"[", b"{")
    if text.count(opening[0]) + text.count(opening[1]) <= MAX_DEPTH:
        return
    if _depth_exceeds(value, MAX_DEPTH):
        raise ValueError("nested deeper than %d levels" % MAX_DEPTH)


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _has_huge_int(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            try:
                float(item)
            except OverflowError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def new_id() -> str:
    """Returns a fresh lower-case hyphenated UUID v4, as invocation ids must be."""
    return str(uuid.uuid4())


def canonical_uuid(value: Any) -> Optional[str]:
    """Returns the lower-case hyphenated form of a UUID string, or None.

    Accepts every spelling the engine accepts: hyphenated, 32 hex digits,
    ``urn:uuid:`` and braces, in any letter case.
    """
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def is_blank(value: Optional[str]) -> bool:
    """True for a namespace that was given but is empty or all white space."""
    return value is not None and not value.strip()
