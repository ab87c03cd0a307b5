"""Cold-start cost of each Lambda handler: its import in a fresh interpreter, against the goal, and
proof that no heavy package (torch, numpy, moto, sagemaker) is imported.

Each figure is the median of RUNS fresh processes (`BENCH_COLD_RUNS`, default 7), timed inside the
child around `import <handler>` (wall and CPU time; the interpreter's own start is not counted). On
a loaded machine the wall figure grows with the load; the CPU figure much less.
Two environments:
- `aws`: as a traced function on AWS (`Tracing: Active`: LAMBDA_TASK_ROOT set, tracing on). This is
  the figure held against the goal.
- `local`: as the tests and the local stack run them (`POWERTOOLS_TRACE_DISABLED=true`).
Bytecode is read from a primed cache of this run's own (PYTHONPYCACHEPREFIX), whatever
PYTHONDONTWRITEBYTECODE says, so runs compare. The Lambda zip ships .pyc files when the build
machine has a Python 3.13 to compile them (functions/Makefile, PYTHON_RUNTIME); without one it
ships source only, and since /var/task is read-only each cold start on AWS then also compiles
what it imports: the `from source` column is the aws import with an empty bytecode cache.
`first event` is what the first event adds on AWS before its handler runs: building the Tracer
(the X-Ray SDK, botocore patched) and importing boto3 for its clients.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.handlers import ENVIRONMENT, HANDLERS, HEAVY

GOAL_MS = 300.0
RUNS = int(os.environ.get("BENCH_COLD_RUNS", "7"))
SOURCE_RUNS = max(1, RUNS // 2)

#: A traced Lambda function's environment (no POWERTOOLS_TRACE_DISABLED).
AWS = {
    **{key: value for key, value in ENVIRONMENT.items() if key != "POWERTOOLS_TRACE_DISABLED"},
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_LAMBDA_FUNCTION_NAME": "segpipe-bench",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
}
LOCAL = {**ENVIRONMENT, "POWERTOOLS_TRACE_DISABLED": "true"}

_CHILD = """
import importlib, json, sys, time
wall, cpu = time.perf_counter(), time.process_time()
importlib.import_module({module!r})
imported = (time.perf_counter() - wall, time.process_time() - cpu)
modules = sorted({{name.split(".")[0] for name in sys.modules}})
wall, cpu = time.perf_counter(), time.process_time()
from segpipe.handlers import runtime
getattr(runtime.tracer, "tracer", None)  # builds a lazy Tracer (an eager one was built at import)
import boto3
first = (time.perf_counter() - wall, time.process_time() - cpu)
print(json.dumps({{"import": imported, "first": first, "modules": modules}}))
"""


def _child(module: str, env: dict[str, str], cache: Path, *, write: bool = False) -> dict[str, Any]:
    environ = {key: value for key, value in os.environ.items() if key != "POWERTOOLS_TRACE_DISABLED"}
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    environ |= env | {"PYTHONPYCACHEPREFIX": str(cache)}
    if not write:
        environ["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", _CHILD.format(module=module)],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    answer: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return answer


@dataclass(frozen=True)
class Row:
    """One handler's medians (ms) and the heavy packages its import loaded."""

    aws: float
    aws_cpu: float
    local: float
    source: float
    first: float
    heavy: list[str]


def _median_ms(runs: list[dict[str, Any]], key: str, index: int = 0) -> float:
    return statistics.median(float(run[key][index]) for run in runs) * 1000


def measure(module: str, cache: Path, empty: Path) -> Row:
    for env in (AWS, LOCAL):  # prime the bytecode cache; not timed
        _child(module, env, cache, write=True)
    aws = [_child(module, AWS, cache) for _ in range(RUNS)]
    local = [_child(module, LOCAL, cache) for _ in range(RUNS)]
    source = [_child(module, AWS, empty) for _ in range(SOURCE_RUNS)]
    loaded = set(aws[0]["modules"]) | set(local[0]["modules"])
    return Row(
        aws=_median_ms(aws, "import"),
        aws_cpu=_median_ms(aws, "import", 1),
        local=_median_ms(local, "import"),
        source=_median_ms(source, "import"),
        first=_median_ms(aws, "first"),
        heavy=sorted(HEAVY & loaded),
    )


def main() -> None:
    print(f"import of each handler in a fresh interpreter: median of {RUNS} runs ({SOURCE_RUNS} from source)")
    load = os.getloadavg()[0]
    print(f"goal: aws import <= {GOAL_MS:.0f} ms; load average {load:.1f} on {os.cpu_count()} CPUs")
    print(
        f"{'handler':<42} {'aws ms':>7} {'cpu ms':>7} {'goal':>5} {'local ms':>8} {'from source':>11}"
        f" {'first event':>11}  heavy packages"
    )
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as empty:
        for module in HANDLERS:
            row = measure(module, Path(cache), Path(empty))
            verdict = "ok" if row.aws <= GOAL_MS else "OVER"
            print(
                f"{module:<42} {row.aws:>7.0f} {row.aws_cpu:>7.0f} {verdict:>5} {row.local:>8.0f}"
                f" {row.source:>11.0f} {row.first:>11.0f}  {', '.join(row.heavy) or 'none'}"
            )


if __name__ == "__main__":
    main()
