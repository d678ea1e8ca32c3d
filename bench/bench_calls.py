"""Calls per second and latency percentiles through the embedded engine.

Two iii_sync workers on one LocalEngine; the caller runs ``--threads`` threads
that each call ``bench::echo`` in a loop for ``--seconds``. Prints one JSON
line. Run: ``python bench/bench_calls.py --seconds 5 --threads 8``.
"""

import argparse
import json
import os
import resource
import threading
import time

import iii_sync
from iii_sync.engine import LocalEngine


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def run(seconds, threads, payload_bytes):
    latencies = []
    latencies_lock = threading.Lock()
    payload = {"blob": "x" * payload_bytes}

    with LocalEngine(port=0, http_port=0) as engine:
        server = iii_sync.register_worker(
            engine.url, name="bench-server", max_workers=threads
        )
        server.register_function("bench::echo", lambda data: data)
        server.sync_registrations()
        client = iii_sync.register_worker(engine.url, name="bench-client")

        stop = time.monotonic() + seconds

        def loop():
            mine = []
            while time.monotonic() < stop:
                start = time.perf_counter()
                client.trigger("bench::echo", payload, timeout=10)
                mine.append(time.perf_counter() - start)
            with latencies_lock:
                latencies.extend(mine)

        cpu_start = time.process_time()
        workers = [
            threading.Thread(target=loop, name="bench-%d" % i) for i in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        cpu = time.process_time() - cpu_start
        client.close()
        server.close()

    latencies.sort()
    return {
        "benchmark": "calls",
        "threads": threads,
        "payload_bytes": payload_bytes,
        "calls": len(latencies),
        "calls_per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "process_cpu_ms_per_call": round(cpu * 1000 / max(1, len(latencies)), 3),
        "max_rss_mb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
        "pid": os.getpid(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--payload-bytes", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps(run(args.seconds, args.threads, args.payload_bytes)))


if __name__ == "__main__":
    main()
