"""The `tiny` preset on the CPU for the trainer's tests: training samples of synthetic images, a
predictor, a checkpoint fingerprint and a whole `fit`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segpipe.models.common import ModelType
from segpipe.models.trainer_io import TrainingConfig
from segpipe_trainer.data import Sample
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.infer import Predictor
from segpipe_trainer.model import Segmenter, build_model
from segpipe_trainer.postprocess import distance_target
from segpipe_trainer.train import Fingerprint, FitResult, LoopSetup, StopSignal, fit, seed_everything
from tests.trainer.trainer_testkit import CLASSES, synthetic_image


def synthetic_sample(
    *, seed: int, size: tuple[int, int], objects: int, file_name: str | None = None
) -> Sample:
    """A training sample of one `synthetic_image`: pixels scaled to [0, 1], labels, classes and the
    distance target (named `{seed}.tif` unless told otherwise)."""
    synthetic = synthetic_image(size=size, objects=objects, seed=seed)
    return Sample(
        file_name=file_name or f"{seed}.tif",
        image=synthetic.pixels.astype(np.float32) / 65535,
        labels=synthetic.labels,
        classes=synthetic.classes,
        distance=distance_target(synthetic.labels),
    )


def cpu_predictor(
    model: torch.nn.Module,
    *,
    model_type: ModelType = "instance",
    num_classes: int = 2,
    tile_size: int = 64,
    **options: Any,
) -> Predictor:
    """A predictor of one-channel images on the CPU; `options` are the predictor's other fields."""
    return Predictor(
        model=model,
        model_type=model_type,
        num_classes=num_classes,
        tile_size=tile_size,
        in_channels=1,
        device=torch.device("cpu"),
        **options,
    )


def tiny_fingerprint(**overrides: Any) -> Fingerprint:
    """The checkpoint fingerprint of the `tiny` instance preset on one channel, one process."""
    values: dict[str, Any] = {
        "preset": "tiny",
        "model_type": "instance",
        "classes": CLASSES,
        "tile_size": 64,
        "seed": 0,
        "in_channels": 1,
        "world": 1,
    }
    return Fingerprint(**{**values, **overrides})


def fit_tiny(
    config: TrainingConfig,
    *,
    checkpoints: Path,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample] = (),
    fingerprint: Fingerprint,
    stop: StopSignal | None = None,
    **setup_options: Any,
) -> tuple[Segmenter, FitResult]:
    """A freshly seeded `tiny` instance model (two classes) trained by `fit` on the CPU, for the
    config's steps per epoch (3 when it leaves them open)."""
    seed_everything(config.seed)
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1)
    setup = LoopSetup(
        config=config,
        runtime=Runtime(),
        train_samples=train_samples,
        val_samples=val_samples,
        class_weights=torch.ones(3),
        in_channels=1,
        steps_per_epoch=config.steps_per_epoch or 3,
        checkpoints=checkpoints,
        fingerprint=fingerprint,
        stop=stop or StopSignal(),
        encoder_pretrained=False,
        **setup_options,
    )
    return model, fit(model, setup=setup, predictor=cpu_predictor(model))
