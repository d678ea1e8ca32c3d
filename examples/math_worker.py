"""A long-running worker that serves ``math::add`` until Ctrl-C.

Start an engine first (``iii-sync engine``), then run
``python examples/math_worker.py``; set ``III_URL`` to use another engine.
"""

import logging

import iii_sync


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    worker = iii_sync.register_worker(name="math-worker")

    @worker.function("math::add", description="Adds a and b")
    def add(data):
        return {"sum": data["a"] + data["b"]}

    worker.register_trigger(
        "http", "math::add", {"api_path": "/add", "http_method": "POST"}
    )
    worker.sync_registrations()
    logging.getLogger("math-worker").info("ready: math::add and POST /add")
    worker.run_forever()


if __name__ == "__main__":
    main()
