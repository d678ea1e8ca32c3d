"""The ``state::update`` operations (engine-protocol §6.5).

A string path is one literal top-level key (dots are not separators) and
``""`` is the root; ``merge`` and ``append`` also take a list of literal
segments. Ops apply in order; a failing op is skipped and reported as
``{op_index, code, message, doc_url}``. Error codes and limits follow the
engine's ``update_ops`` module.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

MAX_PATH_DEPTH = 32
MAX_SEGMENT_BYTES = 256
MAX_VALUE_DEPTH = 16
MAX_VALUE_KEYS = 1024
_FORBIDDEN_KEYS = ("__proto__", "constructor", "prototype")
_DOC_URL = "https://iii.dev/docs/workers/iii-state#error-codes"

_MISSING = object()


class OpError(Exception):
    """One op failed; carries its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def apply_ops(old_value: Any, ops: List[Dict[str, Any]]) -> Tuple[Any, List[Any]]:
    """Applies ``ops`` to a copy of ``old_value``.

    Args:
        old_value: The stored value, or None when the key does not exist.
        ops: Validated op objects (see ``check_op``).

    Returns:
        The new value and the list of per-op errors.
    """
    state = _State(old_value)
    errors = []
    for index, op in enumerate(ops):
        try:
            getattr(state, "op_" + op["type"])(op)
        except OpError as exc:
            errors.append(
                {
                    "op_index": index,
                    "code": exc.code,
                    "message": exc.message,
                    "doc_url": _DOC_URL,
                }
            )
    return state.value, errors


def check_op(op: Any) -> Optional[str]:
    """Returns why ``op`` cannot deserialise, or None when it is well formed."""
    if not isinstance(op, dict) or op.get("type") not in _OP_FIELDS:
        return f"unknown or missing op type in {op!r}"
    for field, kind in _OP_FIELDS[op["type"]]:
        value = op.get(field)
        if field == "path" and value is None and kind != "str":
            continue
        if kind == "str" and not isinstance(value, str):
            return "`path` of a {} op must be a string".format(op["type"])
        if kind == "path" and not _is_path(value):
            return "`path` of a {} op must be a string or a list of strings".format(
                op["type"]
            )
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            return "`by` of a {} op must be an integer".format(op["type"])
    return None


_OP_FIELDS = {
    "set": (("path", "str"),),
    "merge": (("path", "path"),),
    "increment": (("path", "str"), ("by", "int")),
    "decrement": (("path", "str"), ("by", "int")),
    "append": (("path", "path"),),
    "remove": (("path", "str"),),
}


def _is_path(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(s, str) for s in value)
    )


def _segments(path: Any) -> List[str]:
    if path is None or path == "":
        return []
    return [path] if isinstance(path, str) else list(path)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _check_path(op: str, segments: List[str]) -> None:
    if len(segments) > MAX_PATH_DEPTH:
        raise OpError(
            f"{op}.path.too_deep",
            f"Path depth {len(segments)} exceeds maximum of {MAX_PATH_DEPTH}",
        )
    for segment in segments:
        if not segment:
            raise OpError(f"{op}.path.empty_segment", "Path contains an empty segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise OpError(
                f"{op}.path.segment_too_long",
                f"Path segment exceeds maximum of {MAX_SEGMENT_BYTES} bytes",
            )
        if segment in _FORBIDDEN_KEYS:
            raise OpError(
                f"{op}.path.proto_polluted",
                f"Path segment '{segment}' is not allowed (prototype pollution).",
            )


def _check_merge_value(value: Any) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise OpError("merge.value.not_an_object", "Merge value must be a JSON object")
    if len(value) > MAX_VALUE_KEYS:
        raise OpError(
            "merge.value.too_many_keys",
            f"Merge value has {len(value)} top-level keys, exceeds maximum of "
            f"{MAX_VALUE_KEYS}",
        )
    for key in value:
        if key in _FORBIDDEN_KEYS:
            raise OpError(
                "merge.value.proto_polluted",
                f"Merge value top-level key {key!r} is a prototype-pollution sink",
            )
    if _depth(value) > MAX_VALUE_DEPTH:
        raise OpError(
            "merge.value.too_deep",
            f"Merge value nesting exceeds maximum of {MAX_VALUE_DEPTH}",
        )
    return value


def _step(value: Any, by: int, sign: int) -> Optional[Any]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value + sign * by


class _State:
    """The value being updated; ``fresh`` while it is still the missing default."""

    def __init__(self, old_value: Any) -> None:
        self.fresh = old_value is None
        self.value: Any = {} if old_value is None else copy.deepcopy(old_value)

    def _object_root(self, op: str, label: str) -> Dict[str, Any]:
        if not isinstance(self.value, dict):
            raise OpError(
                f"{op}.target_not_object",
                f"Cannot {op} at path '{label}': target "
                f"is {_type_name(self.value)}, expected object.",
            )
        return self.value

    def op_set(self, op: Dict[str, Any]) -> None:
        path = op["path"]
        _check_path("set", _segments(path))
        if path == "":
            self.value = copy.deepcopy(op.get("value"))
        else:
            self._object_root("set", path)[path] = copy.deepcopy(op.get("value"))
        self.fresh = False

    def op_merge(self, op: Dict[str, Any]) -> None:
        segments = _segments(op.get("path"))
        _check_path("merge", segments)
        value = _check_merge_value(op.get("value"))
        if not segments and not isinstance(self.value, dict):
            return  # the engine only logs a root merge into a non-object
        self._walk(segments).update(copy.deepcopy(value))
        self.fresh = False

    def _walk(self, segments: List[str]) -> Dict[str, Any]:
        # Intermediate nodes that are missing or not objects become objects.
        if not isinstance(self.value, dict):
            self.value = {}
        node = self.value
        for segment in segments:
            if not isinstance(node.get(segment), dict):
                node[segment] = {}
            node = node[segment]
        return node

    def op_increment(self, op: Dict[str, Any]) -> None:
        self._count("increment", op, 1)

    def op_decrement(self, op: Dict[str, Any]) -> None:
        self._count("decrement", op, -1)

    def _count(self, name: str, op: Dict[str, Any], sign: int) -> None:
        path, by = op["path"], op["by"]
        _check_path(name, _segments(path))
        if path == "":
            current = _MISSING if self.fresh else self.value
            self.value = self._counted(name, "root", current, by, sign)
        else:
            root = self._object_root(name, path)
            root[path] = self._counted(name, path, root.get(path, _MISSING), by, sign)
        self.fresh = False

    @staticmethod
    def _counted(name: str, label: str, current: Any, by: int, sign: int) -> Any:
        if current is _MISSING:
            return sign * by
        updated = _step(current, by, sign)
        if updated is None:
            raise OpError(
                f"{name}.not_number",
                f"Expected number at path '{label}', got {_type_name(current)}.",
            )
        return updated

    def op_append(self, op: Dict[str, Any]) -> None:
        segments = _segments(op.get("path"))
        _check_path("append", segments)
        value = copy.deepcopy(op.get("value"))
        if not segments:
            self.value = _appended(None if self.fresh else self.value, value, "root")
        else:
            label = "[{}]".format(", ".join(segments))
            self._object_root("append", label)
            parent = self._walk(segments[:-1])
            leaf = segments[-1]
            if leaf in parent:
                parent[leaf] = _appended(parent[leaf], value, leaf)
            elif len(segments) == 1:
                parent[leaf] = _appended(None, value, leaf)
            else:
                parent[leaf] = [value]  # a nested missing leaf is always an array
        self.fresh = False

    def op_remove(self, op: Dict[str, Any]) -> None:
        path = op["path"]
        _check_path("remove", _segments(path))
        if path == "":
            self.value = None
        else:
            self._object_root("remove", path).pop(path, None)
        self.fresh = False


def _appended(target: Any, value: Any, label: str) -> Any:
    if target is None:
        return value if isinstance(value, str) else [value]
    if isinstance(target, list):
        return target + [value]
    if isinstance(target, str):
        if not isinstance(value, str):
            raise OpError(
                "append.type_mismatch",
                "Expected string append value at "
                f"path '{label}', got {_type_name(value)}.",
            )
        return target + value
    raise OpError(
        "append.type_mismatch",
        f"Cannot append at path '{label}': target is {_type_name(target)}, "
        "expected array, string, null, or missing field.",
    )
