"""Serving a trigger type: the provider's hooks and the answers to the engine.

The engine relays each binding of a type this worker provides as a
``registertrigger`` frame, and its removal as ``unregistertrigger``. The
provider's hooks are user code, so they run on handler threads; the answer,
a ``triggerregistrationresult``, goes back on the connection the binding came
from, and only if that connection is still the current one.
"""

import logging
from typing import TYPE_CHECKING, Any, Dict, Optional

from . import _protocol
from ._registrations import TriggerConfig, TriggerTypeRef

if TYPE_CHECKING:  # pragma: no cover
    from ._transport import Transport
    from ._worker import Worker

logger = logging.getLogger(__name__)


def answer_binding(
    worker: "Worker",
    transport: "Transport",
    frame: Dict[str, Any],
    code: Optional[str],
    message: str = "",
) -> None:
    """Sends a ``triggerregistrationresult``; an error when ``code`` is set."""
    answer = {
        "type": _protocol.TRIGGERREGISTRATIONRESULT,
        "id": frame["id"],
        "trigger_type": frame.get("trigger_type") or "",
        "function_id": frame.get("function_id") or "",
    }
    if code is not None:
        answer["error"] = {"code": code, "message": message}
    if worker._connection.transport is transport:
        worker._send_quietly(transport, answer)


def run_provider(
    worker: "Worker",
    provided: TriggerTypeRef,
    config: TriggerConfig,
    transport: "Transport",
    register: bool,
) -> None:
    """Runs a provider hook (on a handler thread) and answers a registration."""
    provider: Any = provided.provider
    hook = provider.register_trigger if register else provider.unregister_trigger
    try:
        hook(config)
    except Exception as exc:
        logger.warning(
            "provider of %s refused trigger %s: %s", provided.id, config.id, exc
        )
        if register:
            answer_binding(
                worker,
                transport,
                _binding_frame(config),
                _protocol.TRIGGER_REGISTRATION_FAILED,
                str(exc) or type(exc).__name__,
            )
        return
    if register:
        answer_binding(worker, transport, _binding_frame(config), None)


def _binding_frame(config: TriggerConfig) -> Dict[str, Any]:
    return {
        "id": config.id,
        "trigger_type": config.trigger_type,
        "function_id": config.function_id,
    }
