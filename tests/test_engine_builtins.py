"""Discovery builtins over real sockets (engine-protocol §3.2, §6.1)."""

import pytest
from engine_support import (  # noqa: F401 (fixtures)
    connect_fixture,
    engine_fixture,
    make_engine_fixture,
)

pytestmark = pytest.mark.timeout(20)


def result_of(frame):
    assert "error" not in frame, frame
    return frame.get("result")


def error_of(frame):
    assert "error" in frame, frame
    return frame["error"]


# engine::workers::register


def test_register_answers_success_and_stores_sanitised_metadata(connect, engine):
    worker = connect()
    answer = worker.announce(
        name="\u202eevil\x07 name\u2028 ",
        description="d" * 300,
        runtime="python",
        version="1.2",
        os="linux",
        isolation="none",
        telemetry={"language": "en", "framework": "iii-sync", "extra": 1},
        unknown_key=True,
    )
    assert result_of(answer) == {"success": True}
    (view,) = engine.workers()
    assert view.name == "evil name"
    assert view.details["description"] == "d" * 280
    assert view.details["runtime"] == "python"
    assert view.details["telemetry"] == {"language": "en", "framework": "iii-sync"}
    assert view.namespace == "default"


def test_register_with_a_blank_namespace_is_refused(connect):
    worker = connect()
    error = error_of(worker.announce(name="w", namespace="  "))
    assert error == {
        "code": "INVALID_NAMESPACE",
        "message": "namespace is empty: worker 'w' declared \"  \". Give it a name, "
        "or omit the field to register in 'default'.",
    }
    assert error_of(worker.announce(namespace=""))["message"].startswith(
        "namespace is empty: worker '<unnamed>' declared \"\"."
    )


@pytest.mark.parametrize(
    "data, detail",
    [
        ([1], "invalid type: sequence, expected a map"),
        ({"pid": -1}, "invalid value: integer `-1`, expected u32"),
        ({"pid": "7"}, 'invalid type: string "7", expected u32'),
        ({"name": 5}, "invalid type: integer `5`, expected a string"),
    ],
)
def test_register_input_errors_are_deserialization_errors(connect, data, detail):
    worker = connect()
    error = error_of(worker.call("engine::workers::register", data))
    assert error == {
        "code": "deserialization_error",
        "message": "Failed to deserialize input for engine::workers::register: "
        + detail,
    }


def test_builtins_live_only_in_default(connect):
    worker = connect()
    error = error_of(worker.call("engine::workers::list", {}, namespace="orders"))
    assert error["message"] == (
        "Function engine::workers::list not found in namespace orders. "
        "It is registered in namespace(s): default."
    )


# engine::functions::list / ::info


def test_functions_list_hides_engine_ids_unless_asked(connect):
    worker = connect()
    worker.register_function("svc::b", description="second")
    worker.register_function("svc::a", metadata={"tag": 1})
    worker.register_function("svc::hidden", metadata={"internal": True})
    worker.announce(name="svc-worker")

    listed = result_of(worker.call("engine::functions::list", {}))["functions"]
    ids = [row["function_id"] for row in listed]
    assert "svc::a" in ids and "svc::b" in ids and "state::get" in ids
    assert "svc::hidden" not in ids
    assert not [i for i in ids if i.startswith("engine::")]
    assert ids == sorted(ids)
    row = listed[ids.index("svc::a")]
    assert row == {
        "function_id": "svc::a",
        "namespace": "default",
        "worker_name": "svc-worker",
        "metadata": {"tag": 1},
    }
    state_row = listed[ids.index("state::get")]
    assert state_row["worker_name"] == "state"

    everything = result_of(
        worker.call("engine::functions::list", {"include_internal": True})
    )["functions"]
    ids = [row["function_id"] for row in everything]
    assert "engine::workers::register" in ids and "svc::hidden" in ids


def test_functions_list_filters(connect):
    worker = connect()
    worker.register_function("svc::alpha", description="first letter")
    worker.register_function("other::beta", description="mentions alpha")
    worker.announce(name="filters")

    def ids(**query):
        answer = result_of(worker.call("engine::functions::list", query))
        return [row["function_id"] for row in answer["functions"]]

    assert ids(prefix="svc::") == ["svc::alpha"]
    assert ids(search="alpha") == ["svc::alpha", "other::beta"]
    assert ids(worker="filters") == ["other::beta", "svc::alpha"]
    assert ids(workers=["nobody"]) == []


def test_function_info_single_batch_and_errors(connect):
    worker = connect()
    worker.register_function(
        "svc::f", description="does f", request_format={"type": "object"}
    )
    worker.send(
        {
            "type": "registertrigger",
            "id": "t1",
            "trigger_type": "state",
            "function_id": "svc::f",
            "config": {"scope": "s"},
        }
    )
    worker.announce(name="info")

    detail = result_of(
        worker.call("engine::functions::info", {"function_id": "svc::f"})
    )
    assert detail == {
        "function_id": "svc::f",
        "namespace": "default",
        "worker_name": "info",
        "description": "does f",
        "request_schema": {"type": "object"},
        "registered_triggers": [
            {"id": "t1", "trigger_type": "state", "config": {"scope": "s"}}
        ],
    }
    batch = result_of(
        worker.call("engine::functions::info", {"function_ids": ["svc::f", "nope"]})
    )
    assert batch["functions"][1] == {"function_id": "nope", "error": "not_found"}

    def failure(data):
        return error_of(worker.call("engine::functions::info", data))

    assert failure({"function_id": "nope"}) == {
        "code": "NOT_FOUND",
        "message": "Function 'nope' is not registered.",
    }
    assert failure({"function_id": "a", "function_ids": ["a"]})["message"] == (
        "pass either `function_id` or `function_ids`, not both"
    )
    assert failure({})["message"] == (
        "missing field `function_id` (or `function_ids` for a batch)"
    )
    assert failure({"function_ids": []})["message"] == (
        "`function_ids` must be a non-empty array of function ids"
    )
    assert failure({"function_ids": ["x"] * 33})["message"] == (
        "too many function_ids (max 32)"
    )


def test_function_info_resolves_bare_ids_across_namespaces(connect):
    a, b = connect(), connect()
    a.register_function("svc::f")
    a.announce(name="a", namespace="orders")
    b.register_function("svc::f")
    b.announce(name="b", namespace="billing")

    error = error_of(a.call("engine::functions::info", {"function_id": "svc::f"}))
    assert error["message"] == (
        "Function 'svc::f' is ambiguous: it is registered in namespace(s): "
        "billing, orders. Pass `namespace` to select one."
    )
    detail = result_of(
        a.call(
            "engine::functions::info", {"function_id": "svc::f", "namespace": "billing"}
        )
    )
    assert detail["worker_name"] == "b"


# engine::workers::list / ::info


def test_workers_list_shows_announced_workers_with_counts(connect):
    target, caller, silent = connect(), connect(), connect()
    silent.announce(name="no-pid", pid=None)
    target.register_function("svc::f")
    target.register_function("svc::g")
    target.announce(name="target", runtime="python", version="9")
    pending = caller.invoke("svc::f", {})
    invoke = target.expect_invoke("svc::f")

    rows = result_of(caller.call("engine::workers::list", {}))["workers"]
    assert [row["name"] for row in rows] == ["target"]
    row = rows[0]
    assert row["id"] == target.id and row["function_count"] == 2
    assert row["active_invocations"] == 1
    assert row["status"] == "connected" and row["runtime"] == "python"
    assert set(row) == {
        "name",
        "description",
        "version",
        "id",
        "namespace",
        "runtime",
        "os",
        "status",
        "function_count",
        "connected_at_ms",
        "active_invocations",
        "isolation",
        "ip_address",
    }
    assert row["description"] is None and row["ip_address"] == "127.0.0.1"

    target.answer(invoke, 1)
    caller.expect_result(pending)
    filtered = result_of(caller.call("engine::workers::list", {"runtime": "node"}))
    assert filtered == {"workers": []}


def test_workers_info_lists_functions_trigger_types_and_triggers(connect):
    worker = connect()
    worker.register_function("svc::f")
    worker.send(
        {"type": "registertriggertype", "id": "webhook", "description": "Webhooks"}
    )
    worker.send(
        {
            "type": "registertrigger",
            "id": "t1",
            "trigger_type": "state",
            "function_id": "svc::f",
            "config": {},
        }
    )
    worker.announce(name="svc-worker", namespace="orders")

    info = result_of(worker.call("engine::workers::info", {"name": "svc-worker"}))
    assert info["worker"]["id"] == worker.id and info["worker"]["pid"] == 4242
    assert info["functions"] == ["svc::f"]
    assert info["trigger_types"] == [
        {"id": "webhook", "namespace": "orders", "description": "Webhooks"}
    ]
    assert info["registered_triggers"] == [
        {"id": "t1", "trigger_type": "state", "function_id": "svc::f", "config": {}}
    ]

    error = error_of(worker.call("engine::workers::info", {"name": "ghost"}))
    assert error == {"code": "NOT_FOUND", "message": "Worker 'ghost' is not connected."}
    error = error_of(
        worker.call(
            "engine::workers::info", {"name": "svc-worker", "namespace": "default"}
        )
    )
    assert "orders" in error["message"]


def test_triggers_list_shows_types_and_hides_engine_ones(connect):
    worker = connect()
    worker.send(
        {"type": "registertriggertype", "id": "webhook", "description": "Webhooks"}
    )
    worker.announce(name="provider")
    rows = result_of(worker.call("engine::triggers::list", {}))["triggers"]
    ids = [row["id"] for row in rows]
    assert {"state", "subscribe", "webhook"} <= set(ids)
    assert not [i for i in ids if i.startswith("engine::")]
    webhook = rows[ids.index("webhook")]
    assert webhook == {
        "id": "webhook",
        "namespace": "default",
        "worker_name": "provider",
        "description": "Webhooks",
    }

    everything = result_of(
        worker.call("engine::triggers::list", {"include_internal": True})
    )["triggers"]
    assert "engine::workers-available" in [row["id"] for row in everything]
