"""Tests for iii_sync.engine._http_codec: request payloads and response encoding."""

import email.message
import io
import logging
from typing import Any, Dict

import pytest

from iii_sync.engine._http_codec import (
    NOT_FOUND,
    encode_return,
    envelope,
    read_body,
    split_target,
)


class FakeRequest:
    """The parts of a request handler that reading a body looks at."""

    def __init__(self, headers: Dict[str, str], raw: bytes) -> None:
        self.headers = email.message.Message()
        for name, value in headers.items():
            self.headers[name] = value
        self.rfile = io.BytesIO(raw)


@pytest.mark.timeout(10)
def test_split_target() -> None:
    assert split_target("/a/b?x=1&y") == ("/a/b", "x=1&y")
    assert split_target("/a%20b") == ("/a%20b", "")
    assert split_target("*") == ("*", "")
    assert split_target("http://host:1/p?q=2") == ("/p", "q=2")
    assert split_target("http://host:1") == ("/", "")


@pytest.mark.timeout(10)
def test_read_body() -> None:
    assert read_body(FakeRequest({}, b"ignored")) == b""
    assert read_body(FakeRequest({"Content-Length": "3"}, b"abcdef")) == b"abc"
    chunked = b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
    request = FakeRequest({"Transfer-Encoding": "chunked"}, chunked + b"next")
    assert read_body(request) == b"abcde"
    assert request.rfile.read() == b"next"
    with pytest.raises(ValueError):
        read_body(FakeRequest({"Content-Length": "abc"}, b""))
    with pytest.raises(ValueError):
        read_body(FakeRequest({"Transfer-Encoding": "chunked"}, b"zz\r\n"))


@pytest.mark.timeout(10)
def test_envelope() -> None:
    reply = envelope(404, NOT_FOUND)
    assert (reply.status, reply.cors) == (404, True)
    assert reply.headers == [("content-type", "application/json")]
    assert reply.body == b'{"error":{"code":"NOT_FOUND","message":"Not Found"}}'


@pytest.mark.timeout(10)
def test_encode_return_unit() -> None:
    reply = encode_return({"status_code": 202, "headers": {"X-A": "1"}, "body": [1]})
    assert (reply.status, reply.body) == (202, b"[1]")
    assert reply.headers == [("x-a", "1"), ("content-type", "application/json")]


@pytest.mark.timeout(10)
def test_encode_return_keeps_framing_and_drops_bad_headers(caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="iii_sync.engine._http_codec")
    reply = encode_return(
        {
            "headers": {
                "Content-Length": "99",
                "Transfer-Encoding": "chunked",
                "Connection": "close",
                "Bad Name": "x",
                "X-Ok": "fine",
            },
            "body": float("nan"),
        }
    )
    assert reply.headers == [("x-ok", "fine"), ("content-type", "application/json")]
    assert reply.body == b"null"
    assert "skipping invalid response header 'Bad Name'" in caplog.text
