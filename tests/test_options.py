import os
import socket

import pytest

from iii_sync._options import WorkerOptions


def test_defaults_without_environment():
    options = WorkerOptions(environ={})
    assert options.url == "ws://127.0.0.1:49134"
    assert options.name == "%s:%d" % (socket.gethostname(), os.getpid())
    assert options.namespace is None
    assert options.invocation_timeout == 30.0
    assert options.max_message_size == 64 * 1024 * 1024
    assert options.headers == {}


def test_url_argument_beats_environment():
    env = {"III_URL": "ws://env:1"}
    assert WorkerOptions(environ=env).url == "ws://env:1"
    assert WorkerOptions("ws://arg:2", environ=env).url == "ws://arg:2"


def test_worker_name_option_beats_environment():
    env = {"III_WORKER_NAME": "billing-worker"}
    assert WorkerOptions(environ=env).name == "billing-worker"
    assert WorkerOptions(environ=env, name="x").name == "x"


def test_unicode_name_kept_as_is():
    assert WorkerOptions(environ={}, name="wörker-名").name == "wörker-名"


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_blank_namespace_option_raises(blank):
    with pytest.raises(ValueError, match="blank"):
        WorkerOptions(environ={}, namespace=blank)


def test_namespace_environment_rules():
    assert WorkerOptions(environ={"III_NAMESPACE": ""}).namespace is None
    assert WorkerOptions(environ={"III_NAMESPACE": "  "}).namespace is None
    assert WorkerOptions(environ={"III_NAMESPACE": "billing"}).namespace == "billing"
    both = WorkerOptions(environ={"III_NAMESPACE": "billing"}, namespace="orders")
    assert both.namespace == "orders"


def test_token_adds_bearer_header_unless_given():
    env = {"III_TOKEN": "s3cret"}
    assert WorkerOptions(environ=env).headers == {"Authorization": "Bearer s3cret"}
    mine = WorkerOptions(environ=env, headers={"authorization": "Basic x"})
    assert mine.headers == {"authorization": "Basic x"}
    assert "s3cret" not in repr(WorkerOptions(environ=env).redacted_headers())


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="colour"):
        WorkerOptions(environ={}, colour="blue")


@pytest.mark.parametrize("option", ["invocation_timeout", "ping_interval"])
def test_non_positive_timings_raise(option):
    with pytest.raises(ValueError):
        WorkerOptions(environ={}, **{option: 0})


@pytest.mark.parametrize("url", ["http://127.0.0.1:1", "127.0.0.1:1", "foo://bar"])
def test_url_must_be_a_websocket_url(url):
    with pytest.raises(ValueError, match="ws://"):
        WorkerOptions(url, environ={})


@pytest.mark.parametrize("name", ["", "   "])
def test_blank_name_option_raises(name):
    with pytest.raises(ValueError):
        WorkerOptions(environ={}, name=name)


def test_blank_name_environment_counts_as_unset():
    assert WorkerOptions(environ={"III_WORKER_NAME": "  "}).name.endswith(
        ":%d" % os.getpid()
    )
