"""``iii-sync engine`` and ``python -m iii_sync.engine`` in a subprocess."""

import os
import re
import signal
import subprocess
import sys

import pytest
from engine_support import RawWorker

from iii_sync import cli

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]

URL_RE = re.compile(r"(ws://\S+), http triggers on (http://\S+)")


def start(command):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        command + ["--port", "0", "--http-port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        universal_newlines=True,
    )


def wait_for_url(process):
    # The engine prints its addresses once both listeners accept.
    line = process.stdout.readline()
    match = URL_RE.search(line)
    assert match, (line, process.stderr.read() if process.poll() is not None else "")
    return match.group(1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_module_entry_point_serves_and_stops_on_a_signal(signum):
    process = start([sys.executable, "-m", "iii_sync.engine"])
    try:
        url = wait_for_url(process)
        worker = RawWorker(url)
        worker.barrier()
        assert worker.announce(name="cli")["result"] == {"success": True}
        worker.close()
        process.send_signal(signum)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        process.stdout.close()
        process.stderr.close()


def test_console_script_runs_the_engine():
    script = os.path.join(os.path.dirname(sys.executable), "iii-sync")
    if not os.path.exists(script):
        pytest.skip("the iii-sync console script is not installed here")
    process = start([script, "engine"])
    try:
        RawWorker(wait_for_url(process)).close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        process.stdout.close()
        process.stderr.close()


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "engine" in capsys.readouterr().out


def test_a_taken_port_fails_with_status_1():
    blocker = start([sys.executable, "-m", "iii_sync.engine"])
    try:
        port = wait_for_url(blocker).rsplit(":", 1)[1]
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "iii_sync.engine",
                "--port",
                port,
                "--http-port",
                "0",
            ],
            capture_output=True,
            timeout=20,
            text=True,
        )
        assert second.returncode == 1
        assert "cannot start the engine" in second.stderr
    finally:
        blocker.send_signal(signal.SIGTERM)
        blocker.wait(timeout=15)
        blocker.stdout.close()
        blocker.stderr.close()
