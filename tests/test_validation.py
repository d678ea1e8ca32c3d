import json
import time

import jsonschema
import pytest

from iii_sync import FrameValidationError, _protocol, _validation

UUID = "2f1c1b9a-1111-4222-8333-444455556666"


@pytest.mark.parametrize("direction", ["to_engine", "to_worker"])
def test_every_schema_is_a_valid_schema(direction):
    for frame_type, validator in _validation.validators(direction).items():
        type(validator).check_schema(validator.schema)
        assert validator.schema["properties"]["type"]["const"] == frame_type


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "registerfunction", "id": "math::add"},
        {"type": "invokefunction", "function_id": "f", "data": None},
        {
            "type": "invokefunction",
            "function_id": "f",
            "data": {},
            "invocation_id": UUID,
            "namespace": None,
            "action": {"type": "void"},
        },
        {
            "type": "invokefunction",
            "function_id": "f",
            "data": 1,
            "invocation_id": UUID.replace("-", "").upper(),
        },
        {
            "type": "invokefunction",
            "function_id": "f",
            "data": 1,
            "invocation_id": "urn:uuid:" + UUID,
            "action": {"type": "enqueue", "queue": "q"},
        },
        {
            "type": "invocationresult",
            "invocation_id": "{%s}" % UUID,
            "function_id": "f",
            "error": {"code": "c", "message": "m"},
        },
        {
            "type": "registertrigger",
            "id": "t",
            "trigger_type": "http",
            "function_id": "f",
            "config": None,
            "unknown_field": 1,
        },
        {"type": "reattach", "previous_worker_id": UUID, "reattach_token": None},
        {"type": "ping"},
    ],
)
def test_engine_accepts(frame):
    assert _validation.find_error(frame, "to_engine") is None


@pytest.mark.parametrize(
    "frame, path",
    [
        ({"type": "invokefunction", "function_id": "f"}, "$"),
        (
            {
                "type": "invokefunction",
                "function_id": "f",
                "data": 1,
                "invocation_id": "abc",
            },
            "$.invocation_id",
        ),
        (
            {"type": "invokefunction", "function_id": "f", "data": 1, "namespace": 5},
            "$.namespace",
        ),
        (
            {
                "type": "invokefunction",
                "function_id": "f",
                "data": 1,
                "action": {"type": "Void"},
            },
            "$.action",
        ),
        (
            {"type": "invocationresult", "invocation_id": None, "function_id": "f"},
            "$.invocation_id",
        ),
        ({"type": "invocationresult", "invocation_id": UUID}, "$"),
        (
            {
                "type": "invocationresult",
                "invocation_id": UUID,
                "function_id": "f",
                "error": {"code": "c"},
            },
            "$.error",
        ),
        (
            {
                "type": "registertrigger",
                "id": "t",
                "trigger_type": "http",
                "function_id": "f",
            },
            "$",
        ),
        (
            {"type": "registertriggertype", "id": "t", "description": None},
            "$.description",
        ),
        ({"type": "registerservice", "id": "s", "name": None}, "$.name"),
        ({"type": "Ping"}, "$.type"),
        ({"type": 5}, "$.type"),
        ([], "$"),
    ],
)
def test_engine_refuses(frame, path):
    error = _validation.find_error(frame, "to_engine")
    assert isinstance(error, FrameValidationError)
    assert error.path == path


def test_check_raises_value_error():
    with pytest.raises(ValueError):
        _validation.check({"type": "registerfunction"}, "to_engine")


def test_worker_side_schemas():
    ok = {"type": "workerregistered", "worker_id": UUID, "reattach_token": UUID}
    assert _validation.find_error(ok, "to_worker") is None
    bad = {"type": "workerregistered", "worker_id": "nope"}
    assert _validation.find_error(bad, "to_worker").path == "$.worker_id"


def test_decode_refuses_what_the_engine_refuses():
    for text in ['{"type":"ping","type":"ping"}', '{"a": NaN}', "\ufeff{}", "{} x"]:
        with pytest.raises(ValueError):
            _protocol.decode(text)
    assert _protocol.decode('  {"type":"ping"}  ') == {"type": "ping"}


def test_encode_is_compact_utf8_and_refuses_nan():
    assert _protocol.encode({"a": "é"}) == '{"a":"é"}'
    with pytest.raises(ValueError):
        _protocol.encode({"a": float("nan")})


def test_validators_are_compiled_once_and_much_cheaper_than_one_shot(monkeypatch):
    frame = {
        "type": "invokefunction",
        "function_id": "math::add",
        "invocation_id": UUID,
        "data": {"a": 1, "b": 2},
    }
    schema = json.loads(
        json.dumps(_validation.validators("to_worker")["invokefunction"].schema)
    )
    checks = []
    original = jsonschema.Draft202012Validator.check_schema
    monkeypatch.setattr(
        jsonschema.Draft202012Validator,
        "check_schema",
        classmethod(lambda cls, s: (checks.append(1), original(s))[1]),
    )

    start = time.perf_counter()
    for _ in range(2000):
        assert _validation.find_error(frame, "to_worker") is None
    compiled = time.perf_counter() - start
    assert checks == []

    start = time.perf_counter()
    for _ in range(200):
        jsonschema.validate(frame, schema)
    one_shot = (time.perf_counter() - start) * 10
    assert compiled * 5 < one_shot


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"a":1e400}', "out of range"),
        ('{"a":' + "9" * 400 + "}", "out of range"),
        ('{"a":"\\ud800"}', "surrogate"),
        ('{"a":"\\udc00x"}', "surrogate"),
        ("[" * 128 + "]" * 128, "deeper"),
    ],
)
def test_decode_refuses_what_serde_refuses(text, reason):
    with pytest.raises(ValueError, match=reason):
        _protocol.decode(text)


def test_decode_keeps_what_serde_keeps():
    assert _protocol.decode('{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert _protocol.decode("[" * 127 + "]" * 127)
    assert _protocol.decode('{"a":1e308}') == {"a": 1e308}


@pytest.mark.parametrize("value", [{"a": "\ud800"}, {"a": float("inf")}, {"a": {1, 2}}])
def test_encode_refuses_what_the_engine_could_not_read(value):
    with pytest.raises(ValueError):
        _protocol.encode_bytes(value)


def test_encode_refuses_deep_nesting():
    deep = []
    for _ in range(130):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        _protocol.encode_bytes({"data": deep})
    very_deep = []
    for _ in range(5000):
        very_deep = [very_deep]
    with pytest.raises(ValueError, match="deeper"):
        _protocol.encode_bytes({"data": very_deep})
