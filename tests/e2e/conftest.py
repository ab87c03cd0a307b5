"""End-to-end fixtures: the embedded local stack in a child process, with the real handlers and the
real trainer, driven by standard clients (boto3 for S3, HTTP for the API)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segpipe_local.aws import client
from segpipe_local.client import SegpipeClient
from segpipe_local.config import LocalConfig
from tests.helpers.datasets import DatasetBuilder
from tests.helpers.stack_process import local_config, local_stack_process

PROJECT = "e2e"
#: Small enough to train in seconds on two CPU cores; the flow, not the model, is under test here.
TRAINING = {"epochs": 2, "tile_size": 64}


def tiny_dataset(*, seed: int = 11) -> DatasetBuilder:
    builder = DatasetBuilder(classes=["nucleus", "mitosis"], width=64, height=64, seed=seed)
    builder.add_images(12, objects={"nucleus": 5, "mitosis": 1}, radius=(4.0, 7.0))
    return builder


def upload(
    config: LocalConfig, builder: DatasetBuilder, *, dataset: str, replace: dict[str, bytes] | None = None
) -> None:
    s3 = client("s3", config)
    for name, data in {**builder.files(), **(replace or {})}.items():
        s3.put_object(Bucket=config.bucket, Key=f"projects/{PROJECT}/datasets/{dataset}/{name}", Body=data)


def request(dataset: str, **changes: Any) -> dict[str, Any]:
    return {
        "label": f"e2e {dataset}",
        "dataset": dataset,
        "model_type": "instance",
        "classes": ["nucleus", "mitosis"],
        "test_set": {"strategy": "fraction", "fraction": 0.25, "seed": 0},
        "training": dict(TRAINING),
        **changes,
    }


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("segpipe-home")


class RunningStack:
    """The module's stack, which a test may stop (to restart another on the same data folder)."""

    def __init__(self, state_dir: Path) -> None:
        self._exit = contextlib.ExitStack()
        self.config = self._exit.enter_context(local_stack_process(config=local_config(data_dir=state_dir)))

    def stop(self) -> None:
        self._exit.close()


@pytest.fixture(scope="module")
def running(state_dir: Path) -> Iterator[RunningStack]:
    handle = RunningStack(state_dir)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def stack(running: RunningStack) -> LocalConfig:
    return running.config


@pytest.fixture(scope="module")
def api(stack: LocalConfig) -> SegpipeClient:
    return SegpipeClient(stack.api_url, timeout=60)
