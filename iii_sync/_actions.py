"""What a call asks the engine to do with it: wait, fire and forget, or queue."""

from typing import Any, Dict, Mapping, Optional, Union


class TriggerActionVoid:
    """Fire and forget: the engine sends no result back."""

    def to_wire(self) -> Dict[str, Any]:
        return {"type": "void"}


class TriggerActionEnqueue:
    """Route the call through the engine's queue named ``queue``."""

    def __init__(self, queue: str) -> None:
        self.queue = queue

    def to_wire(self) -> Dict[str, Any]:
        return {"type": "enqueue", "queue": self.queue}


class TriggerAction:
    """Factories for the ``action`` of a dict-form trigger request."""

    @staticmethod
    def Void() -> TriggerActionVoid:  # noqa: N802 - the official SDK's name
        return TriggerActionVoid()

    @staticmethod
    def Enqueue(queue: str) -> TriggerActionEnqueue:  # noqa: N802
        return TriggerActionEnqueue(queue)


Action = Union[None, Mapping[str, Any], TriggerActionVoid, TriggerActionEnqueue]


def wire_action(action: Action) -> Optional[Dict[str, Any]]:
    if action is None:
        return None
    if isinstance(action, (TriggerActionVoid, TriggerActionEnqueue)):
        return action.to_wire()
    if isinstance(action, Mapping):
        return dict(action)
    raise TypeError("action must be a dict or a TriggerAction, not %r" % (action,))


def is_void(action: Optional[Dict[str, Any]]) -> bool:
    """True for a wire action that asks for no result."""
    return action is not None and action.get("type") == "void"
