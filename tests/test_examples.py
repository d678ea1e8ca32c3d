"""The examples run as a newcomer would run them."""

import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

engine_module = pytest.importorskip("iii_sync.engine")


def run(name, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name)],
        env=dict(os.environ, **(env or {})),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_prints_both_results():
    done = run("demo.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith("-> {'sum': 5}")
    assert lines[1].endswith("-> 200 {'sum': 42}")


def test_math_worker_serves_the_caller_and_stops_on_sigint():
    with engine_module.LocalEngine(port=0, http_port=0) as engine:
        env = dict(os.environ, III_URL=engine.url)
        worker = subprocess.Popen(
            [sys.executable, os.path.join(EXAMPLES, "math_worker.py")],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for line in worker.stderr:
                if "ready: math::add" in line:
                    break
            done = run("caller.py", env={"III_URL": engine.url})
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "{'sum': 3}"
            worker.send_signal(signal.SIGINT)
            assert worker.wait(15) == 130
        finally:
            worker.kill()
