"""Reading a builtin function's input the way the engine's serde structs do.

Engine builtins deserialise ``data`` into a struct: unknown keys are ignored,
``null`` counts as absent for optional fields, and a value of the wrong JSON
type fails the call with ``deserialization_error`` and the message
``Failed to deserialize input for <id>: <serde error>`` (engine-protocol §6,
§4.9). The serde error texts are imitated closely enough for a reader.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ._providers import CallFailed

DESERIALIZATION_ERROR = "deserialization_error"
INVALID_ARGUMENTS = "INVALID_ARGUMENTS"
NOT_FOUND = "NOT_FOUND"

_U32_MAX = 2**32 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def describe(value: Any) -> str:
    """Names a JSON value the way serde's ``invalid type`` errors do."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean `true`" if value else "boolean `false`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        return f"string {rust_debug(value)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def rust_debug(text: str) -> str:
    """Quotes a string like Rust's ``{:?}`` (used in engine messages)."""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char == "\0":
            out.append("\\0")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


class Input:
    """A builtin's ``data``, read field by field.

    Args:
        function_id: Named in error messages.
        data: The call's ``data``; anything but an object fails at once.

    Raises:
        CallFailed: ``deserialization_error`` when ``data`` is not an object.
    """

    def __init__(self, function_id: str, data: Any) -> None:
        self.function_id = function_id
        if not isinstance(data, dict):
            self.fail(f"invalid type: {describe(data)}, expected a map")
        self.data: Dict[str, Any] = data

    def fail(self, detail: str) -> Any:
        """Raises the ``deserialization_error`` for this function."""
        raise CallFailed(
            DESERIALIZATION_ERROR,
            f"Failed to deserialize input for {self.function_id}: {detail}",
        )

    def has(self, key: str) -> bool:
        """True when ``key`` is present and not null."""
        return self.data.get(key) is not None

    def value(self, key: str, required: bool = False) -> Any:
        """Any JSON value; a required one must be present (``null`` allowed)."""
        if required and key not in self.data:
            self.fail(f"missing field `{key}`")
        return self.data.get(key)

    def string(self, key: str, required: bool = False) -> Optional[str]:
        """A string field."""
        return self._typed(key, required, str, "a string")

    def boolean(self, key: str) -> Optional[bool]:
        """An optional boolean field."""
        return self._typed(key, False, bool, "a boolean")

    def mapping(self, key: str) -> Optional[Dict[str, Any]]:
        """An optional object field."""
        return self._typed(key, False, dict, "a map")

    def strings(self, key: str, required: bool = False) -> Optional[List[str]]:
        """A list of strings."""
        items = self._typed(key, required, list, "a sequence")
        for item in items or ():
            if not isinstance(item, str):
                self.fail(f"invalid type: {describe(item)}, expected a string")
        return items

    def integer(
        self, key: str, required: bool = False, unsigned32: bool = False
    ) -> Optional[int]:
        """An i64 field, or a u32 one with ``unsigned32``."""
        value = self.value(key, required)
        if value is None:
            return self._missing(key, required)
        expected = "u32" if unsigned32 else "i64"
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"invalid type: {describe(value)}, expected {expected}")
        low, high = (0, _U32_MAX) if unsigned32 else (_I64_MIN, _I64_MAX)
        if not low <= value <= high:
            self.fail(f"invalid value: {describe(value)}, expected {expected}")
        return int(value)

    def _typed(self, key: str, required: bool, kind: type, expected: str) -> Any:
        value = self.data.get(key)
        if value is None:
            return self._missing(key, required)
        if not isinstance(value, kind):
            self.fail(f"invalid type: {describe(value)}, expected {expected}")
        return value

    def _missing(self, key: str, required: bool) -> Any:
        if required:
            if key in self.data:
                self.fail(f"invalid type: null, expected a value for `{key}`")
            self.fail(f"missing field `{key}`")
        return None
