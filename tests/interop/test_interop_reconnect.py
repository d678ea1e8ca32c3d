"""Official SDK workers and iii_sync, reconnecting to the engine.

* When the engine goes away and a new one starts on the same port, the
  official worker and an iii_sync worker both reconnect by themselves, replay
  their registrations, and calls work again in both directions.
* When a worker's connection drops but the engine has not noticed, the
  worker's ``reattach`` (with the engine's token) retires the old connection
  and the replay goes through without conflicts.

Each test starts its own engine (``cast``), so it can stop it; the conftest
fails each test in which the engine logged a warning.
"""

from urllib.parse import urlsplit

import pytest
from interop_setup import assert_calls_cross, peer_ready
from interop_support import (
    PEER_FUNCTIONS,
    SYNC_PREFIX,
    http_request,
    wait_until,
    worker_row,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

# How long an official SDK may take to come back: its first retry is due
# after about a second (1 s, plus or minus 30 %), the next after two more.
RECONNECT_TIMEOUT = 20.0


def test_both_workers_come_back_after_an_engine_restart(runtime, cast):
    first = cast.start_engine()
    peer = cast.start_peer(runtime, first)
    sync_worker = cast.start_sync_worker(first.url)
    assert_calls_cross(runtime, peer, sync_worker, "before")
    before = peer.request("state")["worker_id"]

    # A new engine on the same ports, as after an engine restart.
    port, http_port = first.port, urlsplit(first.http_url).port
    first.stop()
    second = cast.start_engine(port, http_port)

    wait_until(
        lambda: peer_ready(second, runtime),
        RECONNECT_TIMEOUT,
        f"the {runtime} peer's replayed registrations",
    )
    wait_until(
        lambda: ("default", SYNC_PREFIX + "echo") in second.functions(),
        RECONNECT_TIMEOUT,
        "the iii_sync worker's replayed registrations",
    )
    assert sync_worker.wait_until_connected(RECONNECT_TIMEOUT)

    assert_calls_cross(runtime, peer, sync_worker, "after")
    status, _, body = http_request(
        f"{second.http_url}/interop/{runtime}/again", {"restart": True}
    )
    assert status == 201, body
    assert body["received"] == {"restart": True}

    # The new engine gave the official worker a new identity.
    after = peer.request("state")
    assert after["state"] == "connected", after
    assert after["worker_id"] not in (None, before)
    rows = sync_worker.trigger("engine::workers::list", {})["workers"]
    row = worker_row(rows, after["worker_id"])
    assert (row["name"], row["runtime"], row["function_count"]) == (
        peer.name,
        runtime,
        len(PEER_FUNCTIONS),
    )
    assert not peer.decode_failures(), peer.diagnostics()


def test_both_workers_reattach_when_their_connections_drop(runtime, cast):
    # The workers reach the engine through a relay that then cuts them off
    # while the engine's side stays open: the engine still counts the old
    # connections as live, holding their names and functions. Only a
    # reattach with the right token lets the reconnecting workers back in.
    engine = cast.start_engine()
    relay = cast.start_relay(engine)
    peer = cast.start_peer(runtime, engine, url=relay.url)
    sync_worker = cast.start_sync_worker(relay.url)
    assert_calls_cross(runtime, peer, sync_worker, "before-cut")
    old_ids = {view.id for view in engine.workers()}
    assert len(old_ids) == 2

    assert relay.cut_clients() == 2
    wait_until(
        lambda: replaced(engine, old_ids, runtime),
        RECONNECT_TIMEOUT,
        "both workers to replace their old connections",
    )

    assert sync_worker.wait_until_connected(RECONNECT_TIMEOUT)
    assert_calls_cross(runtime, peer, sync_worker, "after-cut")
    names = sorted(view.name for view in engine.workers())
    assert names == sorted([peer.name, sync_worker.name])
    assert peer.request("state")["worker_id"] not in old_ids
    assert not peer.decode_failures(), peer.diagnostics()


def replaced(engine, old_ids, runtime):
    """True once two new connections hold everything and the old ones are gone."""
    ids = {view.id for view in engine.workers()}
    sync_back = ("default", SYNC_PREFIX + "echo") in engine.functions()
    return (
        len(ids) == 2
        and not ids & old_ids
        and sync_back
        and peer_ready(engine, runtime)
    )
