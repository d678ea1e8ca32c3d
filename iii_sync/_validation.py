"""JSON Schema checks for every frame, in both directions.

The schemas ship in ``iii_sync/schemas``: ``to_engine/<type>.json`` encodes
what the engine's decoder accepts from a worker, ``to_worker/<type>.json`` what
the engine sends to a worker. The worker client checks its outbound frames
against ``to_engine`` and its inbound frames against ``to_worker``; the
embedded engine does the reverse. Each schema is checked against its
metaschema and compiled once, at first use, and the compiled validators are
shared by every connection in the process; no ``$ref`` is ever fetched.
"""

import json
import threading
from typing import Any, Dict, Mapping, Optional

import jsonschema

from ._errors import FrameValidationError

try:  # Python 3.9+
    from importlib.resources import files as _resource_files
except ImportError:  # pragma: no cover - Python 3.7 and 3.8
    _resource_files = None  # type: ignore[assignment]

TO_ENGINE = "to_engine"
TO_WORKER = "to_worker"
_DIRECTIONS = (TO_ENGINE, TO_WORKER)

_Validator = Any

# Guards the lazily built table below; held only while it is filled.
_validators_lock = threading.Lock()
_validators: Dict[str, Dict[str, _Validator]] = {}


def _read_schema_texts(direction: str) -> Dict[str, str]:
    if _resource_files is not None:
        folder = _resource_files("iii_sync").joinpath("schemas").joinpath(direction)
        return {
            entry.name[: -len(".json")]: entry.read_text(encoding="utf-8")
            for entry in folder.iterdir()
            if entry.name.endswith(".json")
        }

    import os

    folder_path = os.path.join(os.path.dirname(__file__), "schemas", direction)
    texts = {}
    for name in os.listdir(folder_path):
        if name.endswith(".json"):
            with open(os.path.join(folder_path, name), encoding="utf-8") as fh:
                texts[name[: -len(".json")]] = fh.read()
    return texts


def _compile(direction: str) -> Dict[str, _Validator]:
    compiled = {}
    for frame_type, text in _read_schema_texts(direction).items():
        schema = json.loads(text)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        compiled[frame_type] = cls(schema)
    return compiled


def validators(direction: str) -> Mapping[str, _Validator]:
    """Returns the compiled validators of one direction, keyed by frame type.

    Thread-safe; compiles on first call only.
    """
    table = _validators.get(direction)
    if table is not None:
        return table

    with _validators_lock:
        if direction not in _validators:
            if direction not in _DIRECTIONS:
                raise ValueError("unknown direction %r" % direction)
            _validators[direction] = _compile(direction)
        return _validators[direction]


def _json_path(error: Any) -> str:
    path = "$"
    for part in error.absolute_path:
        path += "[%d]" % part if isinstance(part, int) else ".%s" % part
    return path


def find_error(frame: Any, direction: str) -> Optional[FrameValidationError]:
    """Checks one decoded frame; returns the problem, or None when it is valid.

    Never raises for bad input: an unknown type or a non-object is reported
    the same way as a schema failure.
    """
    if not isinstance(frame, dict):
        return FrameValidationError(None, "$", "a frame must be a JSON object")

    frame_type = frame.get("type")
    if not isinstance(frame_type, str):
        return FrameValidationError(None, "$.type", "missing or not a string")

    validator = validators(direction).get(frame_type)
    if validator is None:
        return FrameValidationError(frame_type, "$.type", "unknown frame type")

    error = jsonschema.exceptions.best_match(validator.iter_errors(frame))
    if error is None:
        return None
    return FrameValidationError(frame_type, _json_path(error), error.message)


def check(frame: Any, direction: str) -> None:
    """Raises :class:`FrameValidationError` when ``frame`` is not valid."""
    error = find_error(frame, direction)
    if error is not None:
        raise error
