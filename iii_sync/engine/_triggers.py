"""Trigger bindings, trigger-type providers, parking and replay.

A binding resolves to a provider key ``(namespace, trigger type)`` with the
rules of engine-protocol §5.4 and §5.7: an explicit ``trigger_namespace``
means exactly that namespace; otherwise the binding's home namespace, then
``default``. A binding with no provider is parked and revived when one
registers (§5.6). In-process providers validate synchronously; worker
providers get ``registertrigger``/``unregistertrigger`` frames and answer,
if at all, with ``triggerregistrationresult``.

The lock guards the tables only; provider calls and frames happen outside it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, List, Optional

from .. import _protocol
from ._bindings import (
    DEFAULT,
    AckWaiter,
    Key,
    Provider,
    TriggerEntry,
    first_line,
    refusal_frame,
)
from ._providers import InProcessProvider, TriggerRejected
from ._registry import Frame, Registry

logger = logging.getLogger(__name__)


class TriggerRegistry:
    """Bindings and providers of every trigger type."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        # Guards _providers, _live, _parked and _waiters.
        self._tables_lock = threading.Lock()
        self._providers: Dict[Key, Provider] = {}
        self._live: Dict[str, TriggerEntry] = {}
        self._parked: Dict[str, TriggerEntry] = {}
        self._waiters: Dict[str, AckWaiter] = {}

    # Snapshots for discovery builtins and tests

    def providers(self) -> List[Provider]:
        """Every registered trigger type."""
        with self._tables_lock:
            return list(self._providers.values())

    def entries(self) -> List[TriggerEntry]:
        """Every binding, live ones first, then parked ones."""
        with self._tables_lock:
            return list(self._live.values()) + list(self._parked.values())

    # Bindings (§5.4, §5.5, §6.2)

    def bind(self, entry: TriggerEntry, ack_timeout: Optional[float] = None) -> None:
        """Files a binding and hands it to its provider, or parks it.

        With ``ack_timeout``, a worker provider's answer is awaited that long
        (durable bindings; silence counts as success). Blocks only then.

        Raises:
            TriggerRejected: the provider refused; a previous binding with the
                same id is left as it was (in-process providers), or the new
                one is dropped (durable binding refused by a worker provider).
        """
        with self._tables_lock:
            provider = self._provider_for(entry)
        if provider is not None and not self._serving(provider):
            provider = None  # §5.4: a closing provider's connection parks it
        if provider is None:
            self._park(entry)
            logger.warning(
                "trigger %s (%s -> %s) parked: no provider for this type yet",
                entry.binding.id,
                entry.binding.trigger_type,
                entry.binding.function_id,
            )
            return
        waiter = None
        if ack_timeout is not None and provider.worker_id is not None:
            waiter = AckWaiter()
        self._activate(entry, provider, waiter)
        if waiter is not None:
            self._await_ack(entry, waiter, ack_timeout)

    def unbind(self, binding_id: str) -> bool:
        """Removes a live or parked binding; any caller may (§5.5).

        Returns whether it existed. Raises whatever an in-process provider's
        ``unregister`` raises, after the binding is forgotten.
        """
        with self._tables_lock:
            entry = self._live.pop(binding_id, None)
            parked = self._parked.pop(binding_id, None)
        if entry is not None:
            self._tell_unregister(entry)
        return entry is not None or parked is not None

    def _serving(self, provider: Provider) -> bool:
        if provider.worker_id is None:
            return True
        worker = self._registry.get(provider.worker_id)
        return worker is not None and not worker.tearing_down

    def _provider_for(self, entry: TriggerEntry) -> Optional[Provider]:
        # Called with _tables_lock held.
        key = self._resolve(entry)
        return self._providers.get(key) if key else None

    def _resolve(self, entry: TriggerEntry) -> Optional[Key]:
        trigger_type = entry.binding.trigger_type
        if entry.explicit is not None:
            candidates = [(entry.explicit, trigger_type)]
        else:
            candidates = [(entry.home, trigger_type), (DEFAULT, trigger_type)]
        for key in candidates:
            if key in self._providers:
                return key
        return None

    def _activate(
        self,
        entry: TriggerEntry,
        provider: Provider,
        waiter: Optional[AckWaiter] = None,
    ) -> None:
        # An in-process provider may refuse before anything is stored.
        if provider.inprocess is not None:
            provider.inprocess.register(entry.binding)

        entry.key = provider.key
        with self._tables_lock:
            previous = self._live.get(entry.binding.id)
            self._live[entry.binding.id] = entry
            self._parked.pop(entry.binding.id, None)
            if waiter is not None:
                self._waiters[entry.binding.id] = waiter
        if previous is not None and previous.key != provider.key:
            self._tell_unregister(previous)
        if provider.worker_id is not None:
            self._send_register(entry, provider)

    def _park(self, entry: TriggerEntry) -> None:
        # Whatever was live under this id leaves its provider (unless it is
        # this very entry, whose provider is gone or refused it).
        entry.key = None
        with self._tables_lock:
            previous = self._live.pop(entry.binding.id, None)
            self._parked[entry.binding.id] = entry
        if previous is not None:
            self._tell_unregister(previous)

    def _await_ack(
        self, entry: TriggerEntry, waiter: AckWaiter, timeout: Optional[float]
    ) -> None:
        waiter.answered.wait(timeout)
        with self._tables_lock:
            self._waiters.pop(entry.binding.id, None)
        if waiter.error is None:
            return
        self.unbind(entry.binding.id)
        raise TriggerRejected(
            "{}: {}".format(waiter.error.get("code"), waiter.error.get("message"))
        )

    # Frames to and from worker providers

    def _send_register(self, entry: TriggerEntry, provider: Provider) -> None:
        binding = entry.binding
        frame: Frame = {
            "type": _protocol.REGISTERTRIGGER,
            "id": binding.id,
            "trigger_type": binding.trigger_type,
            "function_id": binding.function_id,
            "config": binding.config,
        }
        if binding.metadata is not None:
            frame["metadata"] = binding.metadata
        if binding.namespace != DEFAULT:
            frame["namespace"] = binding.namespace
        if provider.key[0] != DEFAULT:
            frame["trigger_namespace"] = provider.key[0]
        self._send_to(provider.worker_id, frame)

    def _tell_unregister(self, entry: TriggerEntry) -> None:
        with self._tables_lock:
            provider = self._providers.get(entry.key) if entry.key else None
        if provider is None:
            return
        if provider.inprocess is not None:
            provider.inprocess.unregister(entry.binding)
            return
        self._send_to(
            provider.worker_id,
            {
                "type": _protocol.UNREGISTERTRIGGER,
                "id": entry.binding.id,
                "trigger_type": entry.binding.trigger_type,
            },
        )

    def _send_to(self, worker_id: Optional[str], frame: Frame) -> None:
        worker = self._registry.get(worker_id)
        if worker is None or not worker.send(frame):
            logger.debug(
                "provider %s is gone; %s %s not delivered",
                worker_id,
                frame["type"],
                frame["id"],
            )

    def handle_result(self, sender_id: str, frame: Frame) -> None:
        """A provider's ``triggerregistrationresult`` (§5.4, §5.6).

        Only the binding's current provider is listened to. An error parks the
        binding and is forwarded to the worker that registered it.
        """
        with self._tables_lock:
            entry = self._live.get(frame["id"])
            provider = self._providers.get(entry.key) if entry and entry.key else None
            waiter = self._waiters.get(frame["id"])
        if entry is None or provider is None or provider.worker_id != sender_id:
            logger.debug(
                "ignored triggerregistrationresult %s from %s", frame["id"], sender_id
            )
            return

        error = frame.get("error")
        if waiter is not None:
            waiter.error = error
            waiter.answered.set()
            return
        if error is None:
            return

        self._park(entry)
        logger.info("provider refused trigger %s: %s", frame["id"], error)
        owner = self._registry.get(entry.owner)
        if owner is not None:
            owner.send(refusal_frame(entry.binding, error))

    # Providers (§5.6) and departures (§3.7 step 4)

    def add_inprocess(self, provider: InProcessProvider) -> None:
        """Files an engine provider under ``(default, type)``; call before use."""
        key = (DEFAULT, provider.trigger_type)
        with self._tables_lock:
            self._providers[key] = Provider(
                key, inprocess=provider, description=first_line(provider.__doc__)
            )

    def add_provider(self, provider: Provider) -> None:
        """Registers (or replaces) a worker's trigger type and replays bindings."""
        key = provider.key
        with self._tables_lock:
            self._sweep_orphans()
            replaced = self._providers.get(key)
            self._providers[key] = provider
            replay = [e for e in self._live.values() if e.key == key]
            revive = [
                e
                for e in self._parked.values()
                if e.binding.trigger_type == key[1] and self._resolve(e) == key
            ]
            rehome = self._rehome_candidates(key)

        # Replay, revive, then claim back the bindings that fell back (§5.6).
        for entry in replay:
            if replaced is not None and replaced.inprocess is not None:
                self._safely(replaced.inprocess.unregister, entry.binding)
            self._send_register(entry, provider)
        for entry in revive:
            self._activate(entry, provider)
        for entry in rehome:
            self._safely(self._tell_unregister, entry)
            self._activate(entry, provider)

    def _rehome_candidates(self, key: Key) -> List[TriggerEntry]:
        if key[0] == DEFAULT:
            return []
        fallback = (DEFAULT, key[1])
        return [
            e
            for e in self._live.values()
            if e.home == key[0] and e.explicit is None and e.key == fallback
        ]

    def _sweep_orphans(self) -> None:
        for binding_id, entry in list(self._parked.items()):
            if entry.owner is not None and self._registry.get(entry.owner) is None:
                del self._parked[binding_id]

    def remove_worker(self, worker_id: str) -> None:
        """Drops what a departing connection owned and re-homes what it served."""
        with self._tables_lock:
            owned = [e for e in self._live.values() if e.owner == worker_id]
            for entry in owned:
                del self._live[entry.binding.id]
            for binding_id, entry in list(self._parked.items()):
                if entry.owner == worker_id:
                    del self._parked[binding_id]
            gone = [k for k, p in self._providers.items() if p.worker_id == worker_id]
            for key in gone:
                del self._providers[key]
            orphans = [e for e in self._live.values() if e.key in gone]
            unanswered = [self._waiters.get(e.binding.id) for e in orphans]

        # A durable binding waiting for this provider's answer stops waiting.
        for waiter in unanswered:
            if waiter is not None:
                waiter.answered.set()
        for entry in owned:
            if entry.key not in gone:
                self._safely(self._tell_unregister, entry)
        for entry in orphans:
            self._reresolve(entry)

    def _reresolve(self, entry: TriggerEntry) -> None:
        with self._tables_lock:
            provider = self._provider_for(entry)
        if provider is None:
            self._park(entry)
            return
        try:
            self._activate(entry, provider)
        except TriggerRejected as exc:
            logger.warning(
                "trigger %s could not move to %s: %s",
                entry.binding.id,
                provider.key,
                exc,
            )
            self._park(entry)

    @staticmethod
    def _safely(action: Any, subject: Any) -> None:
        try:
            action(subject)
        except Exception:
            logger.exception("trigger provider failed to drop %r", subject)
