"""A local stack in a child process, for tests and benchmarks that drive it over HTTP.

`local_stack_process` runs `LocalStack` in a child process, so that the stack's environment and
the handler modules it imports never leak into the test process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from segpipe_local.config import LocalConfig

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def api_get(config: LocalConfig, path: str, *, timeout_s: float = 10.0) -> Any:
    """GET a JSON resource from the stack's HTTP API."""
    with urllib.request.urlopen(config.api_url + path, timeout=timeout_s) as response:
        return json.loads(response.read())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def loopback_client(service: str, port: int) -> Any:
    """A plain boto3 client of a local server on a loopback port (the local servers take any
    credentials)."""
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="segpipe-local",
        aws_secret_access_key="segpipe-local",
    )


def local_config(*, data_dir: Path) -> LocalConfig:
    """A stack configuration on free ports, saving its state rarely (seeding signals saves itself)."""
    return LocalConfig(
        data_dir=data_dir,
        api_port=free_port(),
        aws_port=free_port(),
        sagemaker_port=free_port(),
        snapshot_seconds=3600.0,
    )


def serve_stack() -> None:
    """Child-process entry: run the stack given as JSON in argv[1] until stdin closes."""
    from segpipe_local.stack import LocalStack

    config = LocalConfig.model_validate_json(sys.argv[1])
    with LocalStack(config):
        sys.stdin.read()


def _wait_until_serving(
    config: LocalConfig, process: subprocess.Popen[bytes], timeout_s: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the local stack exited with code {process.returncode}; see {log_path}")
        try:
            api_get(config, "/projects/none/models", timeout_s=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise TimeoutError(
        f"the local stack did not answer on {config.api_url} within {timeout_s} s; see {log_path}"
    )


@contextmanager
def local_stack_process(*, config: LocalConfig, start_timeout_s: float = 90.0) -> Iterator[LocalConfig]:
    """Run `LocalStack(config)` in a child process (its own session, so the moto server it starts
    goes with it); yields the config once the API answers. Its output goes to
    `{data_dir}/logs/stack.log`."""
    log_path = config.data_dir / "logs" / "stack.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tests.helpers.stack_process import serve_stack; serve_stack()",
                config.model_dump_json(),
            ],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            },
            start_new_session=True,
        )
        try:
            _wait_until_serving(config, process, start_timeout_s, log_path)
            yield config
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.stdin:
        process.stdin.close()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        logger.warning("the local stack did not stop in time; killing its process group")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
