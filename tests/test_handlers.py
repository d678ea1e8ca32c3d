import json

from iii_sync import InvocationError
from iii_sync._handlers import HandlerAdapter, current_invocation, run_invocation

UUID = "2f1c1b9a-1111-4222-8333-444455556666"


def invoke(handler, data=None, metadata=None, max_size=1 << 20):
    frame = {
        "type": "invokefunction",
        "invocation_id": UUID,
        "function_id": "f",
        "data": data,
        "metadata": metadata,
    }
    return json.loads(run_invocation(HandlerAdapter(handler), frame, "W", max_size))


def test_plain_handler_gets_data():
    assert invoke(lambda d: d["a"] + 1, {"a": 1})["result"] == 2


def test_metadata_positional_and_keyword():
    assert invoke(lambda d, m: m, 1, {"k": 1})["result"] == {"k": 1}

    def keyword(data, *, metadata=None):
        return metadata

    assert invoke(keyword, 1, {"k": 2})["result"] == {"k": 2}


def test_context_parameter():
    def handler(data, context):
        assert current_invocation() is context
        return [
            context.invocation_id,
            context.function_id,
            context.caller_worker_id,
            context.worker,
        ]

    result = invoke(handler, {"_caller_worker_id": "abc"})["result"]
    assert result == [UUID, "f", "abc", "W"]
    assert current_invocation() is None


def test_zero_argument_handler():
    assert invoke(lambda: "hi")["result"] == "hi"


def test_invocation_error_sends_its_code():
    def handler(data):
        raise InvocationError("not_allowed", "go away")

    assert invoke(handler)["error"] == {"code": "not_allowed", "message": "go away"}


def test_other_exceptions_are_invocation_failed_with_trace():
    def handler(data):
        raise KeyError("x")

    error = invoke(handler)["error"]
    assert error["code"] == "invocation_failed"
    assert error["message"] == "'x'"
    assert "Traceback" in error["stacktrace"] and "KeyError" in error["stacktrace"]


def test_exception_without_text_is_named_by_its_type():
    def handler(data):
        raise RuntimeError()

    assert invoke(handler)["error"]["message"] == "RuntimeError"


def test_system_exit_is_contained():
    def handler(data):
        raise SystemExit(3)

    assert invoke(handler)["error"]["code"] == "invocation_failed"


def test_unserialisable_result_becomes_error():
    error = invoke(lambda d: {1, 2})["error"]
    assert error["code"] == "result_not_serializable"
    assert invoke(lambda d: float("nan"))["error"]["code"] == "result_not_serializable"


def test_too_large_result_becomes_error():
    error = invoke(lambda d: "x" * 2000, max_size=1000)["error"]
    assert error["code"] == "payload_too_large"


def test_no_invocation_id_means_no_reply():
    frame = {"type": "invokefunction", "function_id": "f", "data": 1}
    assert run_invocation(HandlerAdapter(lambda d: d), frame, None, 100) is None
