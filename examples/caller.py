"""A script that calls ``math::add`` once and exits; no asyncio anywhere.

Run ``python examples/math_worker.py`` (and an engine) first.
"""

import sys

import iii_sync


def main():
    with iii_sync.register_worker(name="math-caller") as worker:
        try:
            print(worker.trigger("math::add", {"a": 1, "b": 2}, timeout=5))
        except iii_sync.InvocationError as exc:
            print("call failed: %s" % exc, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
