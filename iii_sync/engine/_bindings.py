"""What the trigger registry files: providers, bindings, acknowledgements.

A binding lives at a provider key ``(namespace, trigger type)`` or is parked
(engine-protocol §5.4). These are plain records; the tables and their lock
are in ``_triggers``.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Tuple

from .. import _protocol
from ._providers import Binding, InProcessProvider
from ._registry import Frame

Key = Tuple[str, str]
DEFAULT = _protocol.DEFAULT_NAMESPACE


class Provider:
    """A trigger type's provider: an in-process object or a worker."""

    __slots__ = ("key", "worker_id", "inprocess", "description", "formats")

    def __init__(
        self,
        key: Key,
        worker_id: Optional[str] = None,
        inprocess: Optional[InProcessProvider] = None,
        description: Optional[str] = None,
        formats: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.key = key
        self.worker_id = worker_id
        self.inprocess = inprocess
        self.description = description
        self.formats = formats or {}


class TriggerEntry:
    """A binding as filed here.

    Attributes:
        binding: What the provider sees.
        owner: The registering connection, or None for a durable binding
            made by ``engine::register_trigger`` (§6.2).
        home: The owner's connection namespace (``default`` when ownerless).
        explicit: The ``trigger_namespace`` it named, or None.
        key: The provider key it is live at; None while parked.
    """

    __slots__ = ("binding", "owner", "home", "explicit", "key")

    def __init__(
        self,
        binding: Binding,
        owner: Optional[str],
        home: str,
        explicit: Optional[str] = None,
    ) -> None:
        self.binding = binding
        self.owner = owner
        self.home = home
        self.explicit = explicit
        self.key: Optional[Key] = None

    def __repr__(self) -> str:
        return f"TriggerEntry({self.binding!r}, owner={self.owner}, key={self.key})"


class AckWaiter:
    """Waits for a worker provider's answer to a durable binding (§5.6)."""

    def __init__(self) -> None:
        self.answered = threading.Event()
        self.error: Optional[Dict[str, Any]] = None


def refusal_frame(binding: Binding, error: Dict[str, Any]) -> Frame:
    """The ``triggerregistrationresult`` error sent to a registering worker."""
    return {
        "type": _protocol.TRIGGERREGISTRATIONRESULT,
        "id": binding.id,
        "trigger_type": binding.trigger_type,
        "function_id": binding.function_id,
        "error": error,
    }


def first_line(text: Optional[str]) -> Optional[str]:
    """The first non-blank line of a docstring, or None."""
    return text.strip().splitlines()[0] if text and text.strip() else None
