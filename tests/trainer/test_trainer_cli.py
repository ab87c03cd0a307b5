"""`train` end to end: hyperparameters, /opt/ml under SEGPIPE_ML_ROOT, outputs, failures, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from segpipe.models.common import Preset
from segpipe.models.trainer_io import (
    THRESHOLDS,
    Evaluation,
    ImagePredictions,
    ModelCard,
    Progress,
    TrainingConfig,
    prediction_stem,
)
from segpipe_trainer.cli import read_config
from segpipe_trainer.errors import TrainerError
from segpipe_trainer.model import build_model
from segpipe_trainer.paths import ML_ROOT_VARIABLE
from tests.trainer.trainer_testkit import DatasetSpec, hyperparameters, make_ml_root, read_coco

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hyperparameters.json"


def _train_command() -> list[str]:
    script = Path(sys.executable).with_name("train")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "segpipe_trainer.cli"]


def _environment(root: Path) -> dict[str, str]:
    return {**os.environ, ML_ROOT_VARIABLE: str(root), "OMP_NUM_THREADS": "1"}


def _train(root: Path, *, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_train_command(), "train"],  # SageMaker passes the word "train" as the argument
        env=_environment(root),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- Hyperparameters ---------------------------------------------------------------------------


def test_the_pinned_fixture_parses_on_the_trainer_side() -> None:
    config = read_config(FIXTURE)

    assert config.model_type == "instance"
    assert config.classes == ["nucleus", "mitosis"]
    assert config.preset is Preset.TINY
    assert (config.epochs, config.tile_size, config.seed, config.batch_size) == (12, 128, 7, 8)
    assert config.early_stopping_patience == 4


def test_a_bad_hyperparameter_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "hyperparameters.json"
    path.write_text(json.dumps({**json.loads(FIXTURE.read_text()), "classes": "nucleus"}))

    with pytest.raises(TrainerError, match=r"^The hyperparameter 'classes' is invalid: "):
        read_config(path)


def test_a_missing_hyperparameters_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match=r"hyperparameters file .* is missing"):
        read_config(tmp_path / "hyperparameters.json")


# --- Failures ----------------------------------------------------------------------------------


def test_a_corrupt_image_fails_with_one_clear_sentence(tmp_path: Path) -> None:
    root = make_ml_root(tmp_path, params=hyperparameters(), train=DatasetSpec(images=2, size=(64, 64)))
    broken = read_coco(root, "train")["images"][1]["file_name"]
    (root / "input" / "data" / "dataset" / broken).write_bytes(b"II*\x00garbage")

    finished = _train(root)

    assert finished.returncode != 0
    failure = (root / "output" / "failure").read_text().strip()
    assert failure.startswith(f"Image '{broken}' could not be read: ")
    assert "\n" not in failure and failure.endswith(".")
    assert not (root / "model" / "model.json").exists()


# --- End to end --------------------------------------------------------------------------------


def _check_outputs(root: Path, *, model_type: str, splits: dict[str, list[dict[str, object]]]) -> Evaluation:
    """Every output exists and parses as its trainer_io contract; returns the evaluation."""
    assert not (root / "output" / "failure").exists()
    card = ModelCard.model_validate_json((root / "model" / "model.json").read_text())
    assert (card.model_type, card.classes, card.in_channels) == (model_type, ["round", "long"], 1)
    model = build_model(
        preset=card.preset,
        num_classes=2,
        model_type=card.model_type,
        in_channels=1,
        instance_head=card.instance_head,
    )
    model.load_state_dict(load_file(str(root / "model" / card.weights)))

    evaluation = Evaluation.model_validate_json((root / "output" / "data" / "evaluation.json").read_text())
    assert evaluation.thresholds == list(THRESHOLDS)
    assert card.suggested_threshold == evaluation.suggested_threshold
    config = json.loads((root / "output" / "data" / "config.json").read_text())
    assert config == card.config
    assert TrainingConfig.model_validate(
        {k: v for k, v in config.items() if k in TrainingConfig.model_fields}
    )
    progress = Progress.model_validate_json((root / "checkpoints" / "progress.json").read_text())
    assert progress.phase == "done"

    for split, images in splits.items():
        for image in images:
            stem = prediction_stem(str(image["file_name"]))
            predictions = ImagePredictions.model_validate_json(
                (root / "output" / "data" / "predictions" / split / f"{stem}.json").read_text()
            )
            _check_predictions(root, predictions, image=image, split=split)
    return evaluation


def _check_predictions(
    root: Path, predictions: ImagePredictions, *, image: dict[str, object], split: str
) -> None:
    width, height = int(image["width"]), int(image["height"])  # type: ignore[call-overload]
    assert (predictions.file_name, predictions.width, predictions.height) == (
        image["file_name"],
        width,
        height,
    )
    assert predictions.split == split
    for obj in predictions.objects:
        assert obj.score >= 0.05
        assert obj.category in {"round", "long"}
        points = np.concatenate([np.asarray(ring).reshape(-1, 2) for ring in obj.segmentation])
        assert points.min() >= 0 and points[:, 0].max() <= width and points[:, 1].max() <= height
    assert predictions.preview is not None
    with Image.open(root / "output" / "data" / "previews" / predictions.preview) as preview:
        long_side = max(width, height)
        expected = (
            (width, height)
            if long_side <= 1024
            else (round(width * 1024 / long_side), round(height * 1024 / long_side))
        )
        assert preview.size == expected
        assert preview.mode in {"L", "RGB"}


def test_train_writes_every_output_of_an_instance_model(tmp_path: Path) -> None:
    root = make_ml_root(
        tmp_path,
        params=hyperparameters(model_type="instance", validation_fraction=0.3),
        train=DatasetSpec(images=3, size=(96, 96), objects=4),
        test=[
            DatasetSpec(images=1, size=(80, 1100), objects=10, seed=5),
            DatasetSpec(images=1, size=(48, 48), seed=6),
        ],
    )

    finished = _train(root)

    assert finished.returncode == 0, finished.stdout[-3000:]
    assert "epoch=1 train_loss=" in finished.stdout
    assert "epoch=1 val_loss=" in finished.stdout and " val_score=" in finished.stdout
    splits = {"train": read_coco(root, "train")["images"], "test": read_coco(root, "test")["images"]}
    evaluation = _check_outputs(root, model_type="instance", splits=splits)
    assert evaluation.test is not None and evaluation.test.images == 2
    assert evaluation.train.images == 3 and evaluation.suggested_from == "validation"
    assert evaluation.train.ap_overall is not None
    assert (root / "checkpoints" / "last.pt").is_file()


def test_train_writes_every_output_of_a_semantic_model_without_a_test_set(tmp_path: Path) -> None:
    root = make_ml_root(
        tmp_path,
        params=hyperparameters(model_type="semantic"),
        train=DatasetSpec(images=2, size=(64, 72), objects=4, suffix=".png"),
    )

    finished = _train(root)

    assert finished.returncode == 0, finished.stdout[-3000:]
    evaluation = _check_outputs(
        root, model_type="semantic", splits={"train": read_coco(root, "train")["images"]}
    )
    assert evaluation.test is None and evaluation.suggested_from == "train"
    assert evaluation.train.sweep[0].overall.iou is not None


@pytest.mark.slow
def test_sigterm_leaves_a_checkpoint_and_the_run_resumes(tmp_path: Path) -> None:
    root = make_ml_root(
        tmp_path,
        params=hyperparameters(epochs=3, steps_per_epoch=6, batch_size=2),
        train=DatasetSpec(images=2, size=(64, 64), objects=3),
    )
    process = subprocess.Popen(
        _train_command(), env=_environment(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in process.stdout:
        lines.append(line)
        if line.startswith("epoch=1 train_loss=") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=120)

    assert process.returncode == 143, "".join(lines) + rest
    assert (root / "checkpoints" / "last.pt").is_file()
    interrupted_at = Progress.model_validate_json((root / "checkpoints" / "progress.json").read_text())
    assert 1 <= interrupted_at.epoch < 3 and interrupted_at.phase == "training"
    assert not (root / "model" / "model.json").exists()
    assert not (root / "output" / "failure").exists()

    resumed = _train(root)

    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "Resuming from last.pt" in resumed.stdout
    assert "epoch=1 train_loss=" not in resumed.stdout
    assert "epoch=3 train_loss=" in resumed.stdout
    assert ModelCard.model_validate_json((root / "model" / "model.json").read_text()).epochs_trained == 3
