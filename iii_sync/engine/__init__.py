"""The embedded iii engine: a local stand-in for development and tests.

``LocalEngine`` speaks the worker protocol with the real engine's rules on a
WebSocket port and serves ``http`` triggers on another. Run it in-process::

    from iii_sync.engine import LocalEngine

    with LocalEngine(port=0, http_port=0) as engine:
        ...  # connect workers to engine.url

or from a shell with ``iii-sync engine`` or ``python -m iii_sync.engine``.
It needs the ``websockets`` package (the ``engine`` extra).

Known shortcomings, on purpose (the stand-in scope of engine-protocol §11):

* No data channels (``/ws/channels``, ``engine::channels::create``), streams,
  queues (enqueue answers ``enqueue_error`` as a default engine does), RBAC,
  middleware or HTTP-invoked functions (a ``registerfunction`` with
  ``invocation`` is logged and ignored).
* ``engine::workers::list`` shows connected workers only, not the engine's
  own in-process workers.
* Two decoding corners the errata list are not reproduced: a variant index
  in place of a tag, and the sequence form of a frame (a top-level array is
  always dropped).
* A single WebSocket frame over 16 MiB ends the connection only where the
  installed ``websockets`` can cap frames (17 can, 11 cannot; see
  ``_server``); elsewhere only the 64 MiB message limit applies. Over a
  limit the connection closes with code 1009 where the engine drops it.
* Unsubscribing one ``subscribe`` binding leaves the topic's other
  subscribers in place, where the engine's local adapter drops them all.
"""

from ._engine import LocalEngine
from ._providers import CallFailed
from ._views import TriggerView, WorkerView

__all__ = ["CallFailed", "LocalEngine", "TriggerView", "WorkerView"]
