"""`segpipe train`: the whole round trip from one command against the local stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import tiny_dataset
from tests.helpers.stack_process import free_port

SEGPIPE = str(Path(sys.executable).with_name("segpipe"))  # the console script, as a user runs it

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("local-stack")]


def test_segpipe_train_uploads_trains_and_prints_the_results(tmp_path: Path) -> None:
    # Given a dataset folder on disk
    folder = tiny_dataset(seed=21).write(tmp_path / "cells")
    ports = [str(free_port()) for _ in range(3)]

    # When one command trains on it
    command = [SEGPIPE, "train", "--dataset", str(folder), "--classes", "nucleus,mitosis", "--project", "cli"]
    command += ["--epochs", "1", "--tile-size", "64", "--data-dir", str(tmp_path / "home")]
    command += ["--port", ports[0], "--aws-port", ports[1], "--sagemaker-port", ports[2]]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
    )

    # Then it uploaded, trained, and printed the details, the statistics and where to look
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "uploaded 13 files to s3://segpipe-local-data/projects/cli/datasets/cells/" in out
    assert "version 1 submitted" in out
    assert "Training details of version 1" in out
    assert "Statistics at the suggested threshold" in out
    assert f"Look at the predictions: http://127.0.0.1:{ports[0]}/ui/#/projects/cli/models/1" in out


def test_segpipe_train_refuses_a_folder_without_annotations(tmp_path: Path) -> None:
    result = subprocess.run(
        [SEGPIPE, "train", "--dataset", str(tmp_path), "--classes", "nucleus"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "holds no annotations.json" in result.stderr
