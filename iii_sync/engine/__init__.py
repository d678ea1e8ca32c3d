"""The embedded iii engine: a local stand-in for development and tests.

``LocalEngine`` speaks the worker protocol with the real engine's rules on a
WebSocket port and serves ``http`` triggers on another. Run it in-process::

    from iii_sync.engine import LocalEngine

    with LocalEngine(port=0, http_port=0) as engine:
        ...  # connect workers to engine.url

or from a shell with ``iii-sync engine`` or ``python -m iii_sync.engine``.
It needs the ``websockets`` package (the ``engine`` extra).
"""

from ._engine import LocalEngine
from ._providers import CallFailed
from ._views import TriggerView, WorkerView

__all__ = ["CallFailed", "LocalEngine", "TriggerView", "WorkerView"]
