"""The quick-start demo: an engine, a worker, and two ways to call it.

Starts the embedded engine on free local ports, connects a worker that serves
``math::add`` and exposes it as ``POST /add``, then calls it once through the
SDK and once with a real HTTP request, and prints both results.

Run it with ``python examples/demo.py``.
"""

import json
import urllib.request

import iii_sync
from iii_sync.engine import LocalEngine


def add(data):
    """Adds two numbers; called through the SDK."""
    return {"sum": data["a"] + data["b"]}


def add_http(request):
    """The same sum for an HTTP trigger: the JSON body is in request["body"]."""
    body = request["body"] or {}
    return {"status_code": 200, "body": add(body)}


def post_json(url, payload):
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def main():
    with LocalEngine(port=0, http_port=0) as engine:
        with iii_sync.register_worker(engine.url, name="demo-math") as worker:
            worker.register_function("math::add", add)
            worker.register_function("math::add_http", add_http)
            worker.register_trigger(
                "http", "math::add_http", {"api_path": "/add", "http_method": "POST"}
            )
            worker.sync_registrations()

            with iii_sync.register_worker(engine.url, name="demo-caller") as caller:
                result = caller.trigger("math::add", {"a": 2, "b": 3})
                print("SDK call   math::add {a: 2, b: 3} ->", result)

            status, body = post_json(engine.http_url + "/add", {"a": 20, "b": 22})
            print(
                "HTTP POST  %s/add {a: 20, b: 22} -> %d %s"
                % (engine.http_url, status, body)
            )


if __name__ == "__main__":
    main()
