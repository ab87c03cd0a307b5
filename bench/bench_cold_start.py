"""Cold-start cost of each Lambda handler: import time (`python -X importtime`) in a fresh
interpreter, and proof that no heavy package (torch, numpy, moto, sagemaker) is imported."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys

from tests.helpers.handlers import ENVIRONMENT, HANDLERS, HEAVY

_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def measure(module: str) -> tuple[float, float, set[str]]:
    """(total import ms of the module, of boto3 within it, top-level packages imported)."""
    code = (
        f"import {module}, sys; print('MODULES', ' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env={**os.environ, **ENVIRONMENT},
        capture_output=True,
        text=True,
        check=True,
    )
    cumulative = {}
    for line in result.stderr.splitlines():
        if match := _LINE.match(line):
            cumulative[match[4]] = int(match[2]) / 1000
    modules = set(result.stdout.split("MODULES", 1)[1].split())
    return cumulative[module], cumulative.get("boto3", 0.0), modules


def main() -> None:
    print("fresh interpreter per run, median of 5, cumulative import time from -X importtime")
    print(f"{'handler':<45} {'import ms':>9} {'of which boto3':>15}  heavy packages")
    for module in HANDLERS:
        runs = [measure(module) for _ in range(5)]
        total = statistics.median(run[0] for run in runs)
        boto = statistics.median(run[1] for run in runs)
        heavy = sorted(set(HEAVY) & runs[0][2]) or ["none"]
        print(f"{module:<45} {total:>9.0f} {boto:>15.0f}  {', '.join(heavy)}")


if __name__ == "__main__":
    main()
