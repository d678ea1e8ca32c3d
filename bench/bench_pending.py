"""Memory and time for many calls pending at once, and their cleanup.

Sends ``--calls`` calls that nobody answers (to a stub engine that stays
silent), measures the memory they hold, lets them time out, and checks the
map is empty. Prints one JSON line. Run: ``python bench/bench_pending.py``.
"""

import argparse
import json
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from stub_engine import StubEngine  # noqa: E402

import iii_sync  # noqa: E402


def run(calls, timeout):
    with StubEngine() as stub:
        worker = iii_sync.register_worker(stub.url, name="bench-pending")
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        start = time.perf_counter()
        futures = [
            worker.trigger_async("nobody::home", {"n": n}, timeout=timeout)
            for n in range(calls)
        ]
        send_seconds = time.perf_counter() - start
        held = sum(
            s.size_diff
            for s in tracemalloc.take_snapshot().compare_to(before, "filename")
        )
        for future in futures:
            try:
                future.result(timeout + 10)
            except iii_sync.InvocationTimeoutError:
                pass
        left = len(worker._pending)
        tracemalloc.stop()
        worker.close()
    return {
        "benchmark": "pending",
        "calls": calls,
        "send_calls_per_second": round(calls / send_seconds, 1),
        "bytes_per_pending_call": round(held / calls, 1),
        "pending_after_timeouts": left,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    print(json.dumps(run(args.calls, args.timeout)))


if __name__ == "__main__":
    main()
