"""Wire vocabulary shared by the worker client and the embedded engine.

Frame types, error codes, the JSON codec and UUID handling live here so that
both sides of the protocol spell them the same way. The rules follow the
engine's own decoder (see ``engine-protocol.md`` §1.5 in the project notes):
JSON text, one object per frame, compact UTF-8 on the way out.
"""

import json
import uuid
from typing import Any, Dict, List, Optional, Tuple

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
AUTH_ERROR_FRAME = "error"

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
    """A JSON object names the same key twice, which the engine refuses."""


def encode(frame: Dict[str, Any]) -> str:
    """Serialises a frame as compact UTF-8 JSON text.

    Raises:
        ValueError: a value is not JSON (``NaN``, infinities, a set, an object).
    """
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _reject_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    result: Dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError("duplicate key %r" % key)
        result[key] = value
    return result


def decode(text: str) -> Any:
    """Parses a frame's JSON text as the engine does.

    Leading and trailing white space is allowed; duplicate keys, a byte-order
    mark, ``NaN`` and trailing garbage are not.

    Raises:
        ValueError: the text is not one JSON value (``DuplicateKeyError`` for a
            repeated key).
    """
    return json.loads(
        text,
        object_pairs_hook=_reject_duplicates,
        parse_constant=_refuse_constant,
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError("%s is not JSON" % name)


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
