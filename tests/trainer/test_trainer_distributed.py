"""Two processes under torchrun (Gloo on CPU): the DDP path, shared preparation, rank-0 outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segpipe.models.trainer_io import Evaluation
from segpipe_trainer.paths import ML_ROOT_VARIABLE
from tests.trainer.trainer_testkit import DatasetSpec, hyperparameters, make_ml_root


@pytest.mark.slow
def test_two_processes_train_together_and_rank_zero_writes_the_outputs(tmp_path: Path) -> None:
    root = make_ml_root(
        tmp_path,
        params=hyperparameters(epochs=2, steps_per_epoch=2, batch_size=2, validation_fraction=0.4),
        train=DatasetSpec(images=3, size=(64, 64), objects=3),
        test=[DatasetSpec(images=1, size=(64, 64), seed=4)],
    )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "segpipe_trainer.cli",
    ]
    environment = {**os.environ, ML_ROOT_VARIABLE: str(root), "OMP_NUM_THREADS": "1"}

    finished = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=300, check=False
    )

    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    config = json.loads((root / "output" / "data" / "config.json").read_text())
    assert config["world_size"] == 2
    evaluation = Evaluation.model_validate_json((root / "output" / "data" / "evaluation.json").read_text())
    assert evaluation.selection is not None and evaluation.test is not None
    # Refit or not, the final model trained the configured 2 epochs: a refit (few validation groups)
    # takes the configured count unless early stopping ended the first phase, and patience 10
    # cannot end a 2-epoch one.
    assert evaluation.epochs_trained == 2
    # Only rank 0 logs metrics: epoch 2 once per phase (the first, and the refit's if any).
    phases = 2 if evaluation.selection.method == "refit" else 1
    assert finished.stdout.count("epoch=2 train_loss=") == phases
    assert not (root / "work").exists()
