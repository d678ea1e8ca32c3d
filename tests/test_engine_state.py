"""State builtins, update ops and the ``state`` trigger (engine-protocol §6.5, §7.3)."""

import pytest
from engine_support import (  # noqa: F401 (fixtures)
    connect_fixture,
    engine_fixture,
    make_engine_fixture,
)

from iii_sync.engine._update_ops import apply_ops, check_op

pytestmark = pytest.mark.timeout(20)


def ok(frame):
    assert "error" not in frame, frame
    return frame.get("result", "<absent>")


def test_set_get_delete_list_and_groups(connect):
    worker = connect()
    assert ok(worker.call("state::set", {"scope": "s", "key": "a", "value": 1})) == {
        "old_value": None,
        "new_value": 1,
    }
    assert ok(worker.call("state::set", {"scope": "s", "key": "a", "data": 2})) == {
        "old_value": 1,
        "new_value": 2,
    }
    ok(worker.call("state::set", {"scope": "t", "key": "b", "value": {"x": 1}}))

    assert ok(worker.call("state::get", {"scope": "s", "key": "a"})) == 2
    assert ok(worker.call("state::get", {"scope": "s", "key": "zz"})) == "<absent>"
    assert ok(worker.call("state::list", {"scope": "t"})) == [{"x": 1}]
    assert ok(worker.call("state::list_groups", {})) == {"groups": ["s", "t"]}

    assert ok(worker.call("state::delete", {"scope": "s", "key": "a"})) == 2
    assert ok(worker.call("state::delete", {"scope": "s", "key": "a"})) == "<absent>"
    assert ok(worker.call("state::list_groups", {})) == {"groups": ["t"]}


def test_state_input_errors(connect):
    worker = connect()
    error = worker.call("state::set", {"scope": "s", "key": "a"})["error"]
    assert error == {
        "code": "deserialization_error",
        "message": "Failed to deserialize input for state::set: missing field `value`",
    }
    error = worker.call("state::get", {"scope": 1, "key": "a"})["error"]
    assert "invalid type: integer `1`, expected a string" in error["message"]


def test_update_applies_ops_and_reports_failures(connect):
    worker = connect()
    ok(
        worker.call(
            "state::set",
            {"scope": "s", "key": "k", "value": {"n": 1, "text": "a", "list": []}},
        )
    )
    answer = ok(
        worker.call(
            "state::update",
            {
                "scope": "s",
                "key": "k",
                "ops": [
                    {"type": "increment", "path": "n", "by": 4},
                    {"type": "append", "path": "text", "value": "b"},
                    {"type": "append", "path": "list", "value": {"x": 1}},
                    {"type": "set", "path": "a.b", "value": True},
                    {"type": "merge", "path": ["deep", "er"], "value": {"z": 1}},
                    {"type": "remove", "path": "missing"},
                    {"type": "increment", "path": "text", "by": 1},
                ],
            },
        )
    )
    assert answer["old_value"] == {"n": 1, "text": "a", "list": []}
    assert answer["new_value"] == {
        "n": 5,
        "text": "ab",
        "list": [{"x": 1}],
        "a.b": True,
        "deep": {"er": {"z": 1}},
    }
    (failure,) = answer["errors"]
    assert failure["op_index"] == 6 and failure["code"] == "increment.not_number"


def test_update_of_a_missing_key_starts_from_an_empty_object(connect):
    worker = connect()
    answer = ok(
        worker.call(
            "state::update",
            {
                "scope": "s",
                "key": "new",
                "ops": [{"type": "decrement", "path": "n", "by": 2}],
            },
        )
    )
    assert answer == {"old_value": None, "new_value": {"n": -2}}


@pytest.mark.parametrize(
    "old, ops, new, codes",
    [
        (None, [{"type": "append", "path": "", "value": "x"}], "x", []),
        (None, [{"type": "append", "path": "", "value": 1}], [1], []),
        (
            {"e": {}},
            [{"type": "append", "path": "e", "value": "c"}],
            {"e": {}},
            ["append.type_mismatch"],
        ),
        (
            {"t": "a"},
            [{"type": "append", "path": "t", "value": 1}],
            {"t": "a"},
            ["append.type_mismatch"],
        ),
        (
            {"a": None},
            [{"type": "increment", "path": "a", "by": 1}],
            {"a": None},
            ["increment.not_number"],
        ),
        ({"c": 1.5}, [{"type": "increment", "path": "c", "by": 2}], {"c": 3.5}, []),
        (5, [{"type": "set", "path": "k", "value": 1}], 5, ["set.target_not_object"]),
        ({"k": 1}, [{"type": "set", "path": "", "value": None}], None, []),
        ({"k": 1}, [{"type": "remove", "path": ""}], None, []),
        (
            {},
            [{"type": "set", "path": "__proto__", "value": 1}],
            {},
            ["set.path.proto_polluted"],
        ),
        (
            {},
            [{"type": "merge", "value": {"constructor": 1}}],
            {},
            ["merge.value.proto_polluted"],
        ),
        (
            {},
            [{"type": "merge", "path": ["a", ""], "value": {}}],
            {},
            ["merge.path.empty_segment"],
        ),
        (
            {},
            [{"type": "merge", "path": ["s"] * 33, "value": {}}],
            {},
            ["merge.path.too_deep"],
        ),
        ({}, [{"type": "merge", "value": [1]}], {}, ["merge.value.not_an_object"]),
        (
            {"a": 1},
            [{"type": "merge", "path": "a", "value": {"b": 2}}],
            {"a": {"b": 2}},
            [],
        ),
        (
            {},
            [{"type": "append", "path": ["x", "y"], "value": "s"}],
            {"x": {"y": ["s"]}},
            [],
        ),
        (
            "str",
            [{"type": "append", "path": ["x"], "value": 1}],
            "str",
            ["append.target_not_object"],
        ),
    ],
)
def test_update_op_semantics(old, ops, new, codes):
    value, errors = apply_ops(old, ops)
    assert value == new
    assert [e["code"] for e in errors] == codes


def test_malformed_ops_fail_deserialisation():
    assert check_op({"type": "set", "path": "a", "value": 1}) is None
    assert check_op({"type": "merge", "value": {}}) is None
    assert check_op({"type": "explode"}) is not None
    assert check_op({"type": "increment", "path": "a", "by": "1"}) is not None
    assert check_op({"type": "set", "path": ["a"]}) is not None


def test_state_triggers_fire_in_the_bindings_namespace(connect):
    watcher, writer = connect(), connect()
    watcher.register_function("watch::f")
    watcher.send(
        {
            "type": "registertrigger",
            "id": "t1",
            "trigger_type": "state",
            "function_id": "watch::f",
            "config": {"scope": "s", "key": "k"},
            "metadata": {"m": 1},
            "namespace": "orders",
        }
    )
    watcher.announce(name="watcher", namespace="orders")

    ok(writer.call("state::set", {"scope": "other", "key": "k", "value": 0}))
    ok(writer.call("state::set", {"scope": "s", "key": "k", "value": 1}))
    fired = watcher.expect_invoke("watch::f")
    assert fired["data"] == {
        "type": "state",
        "event_type": "state:created",
        "scope": "s",
        "key": "k",
        "old_value": None,
        "new_value": 1,
    }
    assert fired["metadata"] == {"m": 1}
    assert "_caller_worker_id" not in fired["data"]
    watcher.answer(fired, None)

    ok(writer.call("state::delete", {"scope": "s", "key": "k"}))
    deleted = watcher.expect_invoke("watch::f")
    assert deleted["data"]["event_type"] == "state:deleted"
    assert deleted["data"]["old_value"] == 1 and deleted["data"]["new_value"] is None
    watcher.answer(deleted, None)


def test_a_state_condition_returning_false_skips_the_handler(connect):
    worker = connect()
    worker.register_function("gate::cond")
    worker.register_function("gate::handler")
    worker.send(
        {
            "type": "registertrigger",
            "id": "t1",
            "trigger_type": "state",
            "function_id": "gate::handler",
            "config": {"condition_function_id": "gate::cond"},
        }
    )
    worker.announce(name="gated")

    ok(worker.call("state::set", {"scope": "s", "key": "a", "value": 1}))
    condition = worker.expect_invoke("gate::cond")
    worker.answer(condition, False)
    ok(worker.call("state::set", {"scope": "s", "key": "b", "value": 2}))
    condition = worker.expect_invoke("gate::cond")
    assert condition["data"]["key"] == "b"
    worker.answer(condition, True)
    handler = worker.expect_invoke("gate::handler")
    assert handler["data"]["key"] == "b"
    worker.answer(handler, None)


def test_a_bad_state_config_is_refused_by_the_provider(connect):
    worker = connect()
    worker.announce(name="bad-config")
    worker.send(
        {
            "type": "registertrigger",
            "id": "t1",
            "trigger_type": "state",
            "function_id": "f",
            "config": {"scope": 5},
        }
    )
    refusal = worker.recv()
    assert refusal["type"] == "triggerregistrationresult"
    assert refusal["id"] == "t1" and refusal["function_id"] == "f"
    assert refusal["error"]["code"] == "trigger_registration_failed"
    assert refusal["error"]["message"].startswith("Failed to parse trigger config")
