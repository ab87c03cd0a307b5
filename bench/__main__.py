"""`make bench`: every benchmark, one after another (`python -m bench NAME ...` runs some).

Benchmarks print figures and how they were measured; they pass or fail nothing. The GPU
benchmark (bench/gpu_bench.py) is not run here: it needs an accelerator.
"""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = (
    "bench_cold_start",
    "bench_validate",
    "bench_postprocess",
    "bench_analysis",
    "bench_eval",
    "bench_trainer",
    "bench_heads",
    "bench_nuclei",
    "bench_load",
    "bench_review_page",
)


def main(argv: list[str]) -> int:
    chosen = [name if name.startswith("bench_") else f"bench_{name}" for name in argv] or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmarks: {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        importlib.import_module(f"bench.{name}").main()  # each takes its defaults
        print(f"--- {name} took {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
