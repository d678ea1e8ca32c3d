"""The transport over TLS: frames buffered inside the TLS layer are not stalled."""

import json
import ssl
import subprocess
import time
import uuid

import pytest
from stub_engine import StubEngine


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip("openssl cannot make a test certificate: %s" % exc)
    return str(cert), str(key)


@pytest.fixture
def tls_stub(certificate):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with StubEngine(ssl_context=context) as stub:
        yield stub


def frame(function_id, invocation_id):
    text = json.dumps(
        {
            "type": "invokefunction",
            "function_id": function_id,
            "invocation_id": invocation_id,
            "data": {},
        }
    )
    return bytes([0x81, len(text)]) + text.encode()


@pytest.mark.parametrize("count", [2, 50])
def test_frames_in_one_tls_record_are_all_handled(
    tls_stub, make_worker, certificate, count
):
    worker = make_worker(
        tls_stub.url, sslopt={"ca_certs": certificate[0]}, ping_interval=60
    )
    worker.register_function("t::ok", lambda d: "ok")
    connection = tls_stub.next_connection()
    connection.next_frame("registerfunction")

    ids = [str(uuid.uuid4()) for _ in range(count)]
    start = time.monotonic()
    with connection._send_lock:
        connection.sock.sendall(b"".join(frame("t::ok", i) for i in ids))
    answered = {
        connection.next_frame("invocationresult", 2)["invocation_id"] for _ in ids
    }
    assert answered == set(ids)
    assert time.monotonic() - start < 1.0


def test_untrusted_certificate_is_refused(tls_stub, make_worker, caplog):
    import iii_sync

    worker = iii_sync.Worker(tls_stub.url, name="untrusted")
    worker.start()
    try:
        assert not worker.wait_until_connected(1.0)
        assert (
            "CERTIFICATE_VERIFY_FAILED" in caplog.text or "certificate" in caplog.text
        )
    finally:
        worker.close(2)
