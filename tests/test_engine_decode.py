"""Acceptance rules for worker frames (engine-protocol §1.3, §1.5, errata)."""

import json
import math

import pytest

from iii_sync.engine._decode import FrameRefusedError, decode_frame

pytestmark = pytest.mark.timeout(10)

UUID = "2f1c6d0e-8a4b-4c3d-9e2f-0123456789ab"


def refused(message):
    with pytest.raises(FrameRefusedError) as info:
        decode_frame(message)
    return info.value


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "ping"},
        {"type": "pong", "extra": 1},
        {"type": "registerfunction", "id": "math::add"},
        {"type": "invokefunction", "function_id": "f", "data": None},
        {"type": "invokefunction", "function_id": "f", "data": 1, "namespace": None},
        {
            "type": "invokefunction",
            "function_id": "f",
            "data": {},
            "invocation_id": UUID.upper(),
            "action": {"type": "void"},
        },
        {
            "type": "invocationresult",
            "invocation_id": "{%s}" % UUID,
            "function_id": "f",
        },
        {
            "type": "invocationresult",
            "invocation_id": UUID.replace("-", ""),
            "function_id": "f",
            "result": None,
            "error": None,
        },
        {"type": "reattach", "previous_worker_id": "not-even-a-uuid"},
        {"type": "workerregistered", "worker_id": UUID},
        {"type": "registrationrejected", "code": "X"},
        {
            "type": "registertrigger",
            "id": "t",
            "trigger_type": "x",
            "function_id": "f",
            "config": None,
        },
    ],
)
def test_accepts_what_the_engine_parses(frame):
    assert decode_frame(json.dumps(frame)) == frame


def test_surrounding_whitespace_and_binary_json_are_accepted():
    assert decode_frame('  \n{"type":"ping"}\t ') == {"type": "ping"}
    assert decode_frame(b'{"type":"ping"}') == {"type": "ping"}


@pytest.mark.parametrize("message", ["", "   ", "\n\t\r", "\u3000"])
def test_blank_text_is_skipped_silently(message):
    assert decode_frame(message) is None


@pytest.mark.parametrize("tag", [b"OTLP", b"MTRC", b"LOGS"])
def test_telemetry_binary_frames_are_swallowed(tag):
    assert decode_frame(tag + b'{"resourceSpans":[]}') is None
    assert decode_frame(tag + b"\xff\xfe not utf-8") is None


@pytest.mark.parametrize(
    "message, frame_type, reason_part",
    [
        ("nope", None, "not JSON"),
        ('{"type":"ping"} trailing', None, "not JSON"),
        ('{"type":"Ping"}', "Ping", "unknown frame type"),
        (
            '{"type":"unregistertriggertype","id":"x"}',
            "unregistertriggertype",
            "unknown",
        ),
        ('{"id":"x"}', None, "$.type"),
        ('{"type":5}', None, "$.type"),
        ("[]", None, "object"),
        ("null", None, "object"),
        ('"ping"', None, "object"),
        ('{"type":"registerfunction"}', "registerfunction", "id"),
        ('{"type":"invokefunction","function_id":"f"}', "invokefunction", "data"),
        (
            '{"type":"invokefunction","function_id":"f","data":1,"namespace":5}',
            "invokefunction",
            "namespace",
        ),
        (
            '{"type":"invokefunction","function_id":"f","data":1,"invocation_id":"abc"}',
            "invokefunction",
            "invocation_id",
        ),
        (
            '{"type":"invocationresult","function_id":"f","invocation_id":null}',
            "invocationresult",
            "invocation_id",
        ),
        (
            '{"type":"invocationresult","invocation_id":"%s"}' % UUID,
            "invocationresult",
            "function_id",
        ),
        (
            '{"type":"invocationresult","invocation_id":"%s","function_id":"f",'
            '"error":{"code":"x"}}' % UUID,
            "invocationresult",
            "message",
        ),
        ('{"type":"registerservice","id":"s","name":null}', "registerservice", "name"),
        (
            '{"type":"registertriggertype","id":"t","description":null}',
            "registertriggertype",
            "description",
        ),
        (
            '{"type":"registerfunction","id":"f","invocation":{"url":"u",'
            '"method":"post"}}',
            "registerfunction",
            "method",
        ),
        (
            '{"type":"invokefunction","function_id":"f","data":1,'
            '"action":{"type":"Void"}}',
            "invokefunction",
            "action",
        ),
        ('{"type":"ping","type":"ping"}', "ping", "duplicate"),
        ('{"type":"ping","x":NaN}', None, "not JSON"),
    ],
)
def test_refuses_what_the_engine_drops(message, frame_type, reason_part):
    error = refused(message)
    assert error.frame_type == frame_type
    assert reason_part in error.reason


def test_a_byte_order_mark_fails_the_parse():
    error = refused(b"\xef\xbb\xbf" + b'{"type":"ping"}')
    assert "not JSON" in error.reason


def test_binary_that_is_neither_telemetry_nor_utf8_is_refused():
    error = refused(b"\xff\xfe\xfd\xfc")
    assert "neither telemetry nor UTF-8" in error.reason


def test_duplicate_keys_inside_free_form_values_keep_the_last():
    text = '{"type":"invokefunction","function_id":"f","data":{"a":1,"a":2}}'
    assert decode_frame(text)["data"] == {"a": 2}


def test_duplicate_keys_of_a_nested_struct_are_refused():
    text = (
        '{"type":"invocationresult","invocation_id":"%s","function_id":"f",'
        '"error":{"code":"x","code":"y","message":"m"}}' % UUID
    )
    assert refused(text).reason == "duplicate key"


@pytest.mark.parametrize(
    "data, reason_part",
    [
        ('{"a":1,"a":"\\ud800"}', "lone surrogate"),
        ('{"a":1,"a":' + "[" * 200 + "]" * 200 + "}", "nested deeper"),
        ('{"a":1,"a":1e400}', "out of range"),
    ],
)
def test_a_repeated_free_form_key_still_meets_every_other_rule(data, reason_part):
    text = '{"type":"invokefunction","function_id":"f","data":%s}' % data
    error = refused(text)
    assert "not JSON" in error.reason and reason_part in error.reason


def registerfunction_with_timeout(text):
    return (
        '{"type":"registerfunction","id":"f","invocation":{"url":"http://x",'
        '"timeout_ms":%s}}' % text
    )


@pytest.mark.parametrize(
    "timeout", ["-0", "-0.0", "0.0", "1.0", "1e2", "18446744073709551616"]
)
def test_timeout_ms_must_be_an_unsigned_integer_as_serde_reads_it(timeout):
    error = refused(registerfunction_with_timeout(timeout))
    assert error.frame_type == "registerfunction"
    assert "timeout_ms" in error.reason


@pytest.mark.parametrize("timeout", ["0", "30000", "18446744073709551615", "null"])
def test_unsigned_timeouts_are_accepted(timeout):
    frame = decode_frame(registerfunction_with_timeout(timeout))
    assert frame["invocation"]["timeout_ms"] == json.loads(timeout)


def test_minus_zero_is_read_as_a_float_as_serde_reads_it():
    data = decode_frame('{"type":"invokefunction","function_id":"f","data":-0}')
    assert math.copysign(1.0, data["data"]) == -1.0
