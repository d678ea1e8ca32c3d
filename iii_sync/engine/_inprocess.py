"""The common ground of the engine's own trigger types: a table of bindings.

``state``, ``subscribe`` and the discovery types keep their bindings in a
dict and fire through the in-process call path on the engine's call pool.
Each checks a binding's config in ``check`` before it is stored.
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor
from typing import Callable, Dict, List

from ._providers import Binding, FunctionCaller, InProcessProvider


class BindingTable(InProcessProvider):
    """An in-process provider that files its bindings by id.

    Args:
        caller: The engine's in-process call path, used to fire.
        executor: The call pool that fires run on.
    """

    def __init__(self, caller: FunctionCaller, executor: Executor) -> None:
        self._caller = caller
        self._executor = executor
        # Guards _bindings: binding id -> binding.
        self._bindings_lock = threading.Lock()
        self._bindings: Dict[str, Binding] = {}

    def check(self, binding: Binding) -> None:
        """Raises ``TriggerRejected`` for a config this type cannot use."""

    def register(self, binding: Binding) -> None:
        """Checks and files a binding; any thread, never blocks."""
        self.check(binding)
        with self._bindings_lock:
            self._bindings[binding.id] = binding

    def unregister(self, binding: Binding) -> None:
        """Forgets a binding; unknown ids are ignored."""
        with self._bindings_lock:
            self._bindings.pop(binding.id, None)

    def matching(self, wanted: Callable[[Binding], bool]) -> List[Binding]:
        """A snapshot of the bindings ``wanted`` accepts."""
        with self._bindings_lock:
            return [b for b in self._bindings.values() if wanted(b)]
