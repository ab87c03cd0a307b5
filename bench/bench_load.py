"""Load on the local HTTP gateway: 20 concurrent clients reading the model table and a version's
metrics for 30 seconds (loopback only). Reports requests per second, p50/p99 latency and errors.

The stack runs in its own process (as `segpipe local up` does); the clients are threads in this
process using plain HTTP (a new connection per request, as curl would). Both share the same 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from tests.helpers.seed import seed_completed_version
from tests.helpers.stack_process import local_config, local_stack_process
from tests.helpers.synthetic import SeedSpec


def _client(urls: list[str], stop: threading.Event, latencies: list[float], errors: list[str]) -> None:
    turn = 0
    while not stop.is_set():
        url = urls[turn % len(urls)]
        turn += 1
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                response.read()
                if response.status != 200:
                    errors.append(f"HTTP {response.status}")
        except Exception as error:
            errors.append(type(error).__name__)
            continue
        latencies.append(time.perf_counter() - started)


def run(*, clients: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="segpipe-load-") as scratch:
        config = local_config(data_dir=Path(scratch))
        with local_stack_process(config=config):
            seeded = seed_completed_version(
                config=config, spec=SeedSpec(project="load", images=20, objects=400)
            )
            base = f"{config.api_url}/projects/load/models"
            urls = [base, f"{base}/{seeded.version}/metrics", f"{base}/{seeded.version}/metrics?sweep=true"]
            stop = threading.Event()
            per_client: list[list[float]] = [[] for _ in range(clients)]
            errors: list[str] = []
            threads = [
                threading.Thread(target=_client, args=(urls, stop, per_client[index], errors))
                for index in range(clients)
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            time.sleep(seconds)
            stop.set()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
    latencies = sorted(value for values in per_client for value in values)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
    print(
        f"{clients} clients x {seconds:.0f} s against the local gateway; "
        "URLs: model table, metrics, metrics+sweep"
    )
    print(f"requests {len(latencies)}  errors {len(errors)}  throughput {len(latencies) / elapsed:.1f} req/s")
    print(f"latency p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {latencies[-1] * 1000:.1f} ms")
    if errors:
        print("errors:", ", ".join(sorted(set(errors))))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv or [])
    run(clients=args.clients, seconds=args.seconds)


if __name__ == "__main__":
    main()
