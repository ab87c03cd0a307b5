"""What a finished job leaves behind: evaluation, predictions, previews, the model and its card.

Layout (under the ML root): model/model.safetensors, model/model.json, output/data/evaluation.json,
output/data/predictions/{split}/{stem}.json, output/data/previews/{stem}.png, output/data/config.json.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from segpipe.models.common import Preset, SplitName
from segpipe.models.trainer_io import (
    EpochsSource,
    Evaluation,
    ImagePredictions,
    LevelScore,
    ModelCard,
    Normalization,
    Selection,
    SplitEvaluation,
    TrainingConfig,
    prediction_stem,
)
from segpipe_trainer import atomic
from segpipe_trainer.data import Sample
from segpipe_trainer.evaluation import Evaluator, ImagePrediction, evaluate_images
from segpipe_trainer.geometry import objects_from_instances
from segpipe_trainer.images import write_preview
from segpipe_trainer.infer import Predictor
from segpipe_trainer.levels import LevelChoice
from segpipe_trainer.metrics import suggest_thresholds
from segpipe_trainer.model import resolved_head
from segpipe_trainer.paths import MlPaths
from segpipe_trainer.train import save_weights

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"


def write_json(path: Path, payload: BaseModel | dict[str, Any]) -> None:
    """Write JSON atomically (`atomic.write_text`)."""
    text = (
        payload.model_dump_json(indent=2) if isinstance(payload, BaseModel) else json.dumps(payload, indent=2)
    )
    atomic.write_text(path, text)


@dataclass(frozen=True)
class SplitOutputs:
    """Where one split's predictions and previews go; its `write` is the evaluation loop's hook."""

    split: SplitName
    paths: MlPaths
    class_names: Sequence[str]
    score_floor: float

    def write(self, prediction: ImagePrediction) -> None:
        """predictions/{split}/{stem}.json and previews/{stem}.png of one predicted image."""
        sample = prediction.sample
        stem = prediction_stem(sample.file_name)
        preview_name = f"{stem}.png"
        write_preview(np.asarray(sample.image, dtype=np.float32), path=self.paths.previews_dir / preview_name)
        predictions = ImagePredictions(
            file_name=sample.file_name,
            width=sample.width,
            height=sample.height,
            split=self.split,
            preview=preview_name,
            objects=objects_from_instances(
                prediction.instances, class_names=self.class_names, score_floor=self.score_floor
            ),
        )
        write_json(self.paths.predictions_dir(self.split) / f"{stem}.json", predictions)


def evaluate_split(
    predictor: Predictor,
    *,
    samples: Iterable[Sample],
    class_names: Sequence[str],
    outputs: SplitOutputs | None,
) -> SplitEvaluation:
    """Predict every image of a split, and write predictions and previews; the split's metrics."""
    return predict_split(predictor, samples=samples, class_names=class_names, outputs=outputs).result()


def predict_split(
    predictor: Predictor,
    *,
    samples: Iterable[Sample],
    class_names: Sequence[str],
    outputs: SplitOutputs | None,
) -> Evaluator:
    """Predict every image of a split into its evaluator (returned); write predictions and previews
    when `outputs` says where (None writes nothing: the held-out images)."""
    hooks = [] if outputs is None else [outputs.write]
    evaluator = evaluate_images(predictor, samples=samples, class_names=class_names, hooks=hooks)
    logger.info("Evaluated %d images%s", evaluator.images, f" of {outputs.split}" if outputs else "")
    return evaluator


@dataclass(frozen=True)
class Choice:
    """What the choices were made on: the held-out validation images (if any) and how."""

    method: Literal["holdout", "refit", "none"]
    validation_images: Sequence[str]
    validation_groups: int
    validation: SplitEvaluation | None  # of the validation images, by the model that chose on them
    chosen_epoch: int | None
    final_images: int
    #: Where the final model's epoch count came from (a refit that early stopping did not cut
    #: trains for the configured epochs: `job.refit_epochs`).
    epochs_from: EpochsSource = "validation"
    #: Instance models with validation images: the split level chosen on them (`levels`).
    split: LevelChoice | None = None


def _has_class(evaluation: SplitEvaluation, name: str, *, model_type: str) -> bool:
    """Whether a class is present in a split's ground truth (instance) or measured at all (semantic)."""
    for point in evaluation.sweep:
        row = point.per_class.get(name)
        if row is None:
            continue
        if model_type == "instance" and (row.tp or 0) + (row.fn or 0) > 0:
            return True
        if model_type != "instance" and row.iou is not None:
            return True
    return False


def build_evaluation(
    *,
    config: TrainingConfig,
    train: SplitEvaluation,
    test: SplitEvaluation | None,
    choice: Choice,
    epochs_trained: int,
) -> Evaluation:
    """evaluation.json: every split and the suggested thresholds, chosen on the held-out validation
    images when there are any, else on the training images; never on the test set."""
    validation = choice.validation if choice.validation is not None and choice.validation.images else None
    source: Literal["validation", "train"] = "validation" if validation is not None else "train"
    threshold, per_class = suggest_thresholds(validation or train, model_type=config.model_type)
    per_class_from: dict[str, Literal["validation", "train"]] = {name: source for name in per_class}
    if validation is not None:
        _, train_per_class = suggest_thresholds(train, model_type=config.model_type)
        for name, value in train_per_class.items():
            if not _has_class(validation, name, model_type=config.model_type):
                per_class[name], per_class_from[name] = value, "train"
    return Evaluation(
        model_type=config.model_type,
        classes=list(config.classes),
        suggested_threshold=threshold,
        suggested_thresholds=per_class,
        suggested_from=source,
        train=train,
        test=test,
        validation=validation,
        epochs_trained=epochs_trained,
        best_epoch=choice.chosen_epoch,
        selection=_selection(choice, epochs_trained=epochs_trained, per_class_from=per_class_from),
    )


def _selection(
    choice: Choice,
    *,
    epochs_trained: int,
    per_class_from: dict[str, Literal["validation", "train"]],
) -> Selection:
    return Selection(
        method=choice.method,
        validation_images=list(choice.validation_images),
        validation_groups=choice.validation_groups,
        epochs_from="config" if choice.method == "none" else choice.epochs_from,
        chosen_epoch=choice.chosen_epoch,
        final_images=choice.final_images,
        final_epochs=epochs_trained,
        threshold_from="train" if choice.method == "none" else "validation",
        thresholds_from=per_class_from,
        split_level=None if choice.split is None else choice.split.level,
        split_levels=[]
        if choice.split is None
        else [LevelScore(level=level, score=score) for level, score in choice.split.scores.items()],
        summary=_summary(choice, epochs_trained=epochs_trained)
        + _split_sentence(choice.split)
        + "; the test set only measures.",
    )


def _split_sentence(split: LevelChoice | None) -> str:
    if split is None:
        return ""
    return (
        f"; touching objects are split at level {split.level:g}, the best of {len(split.scores)} "
        "levels on the held-out images"
    )


def _summary(choice: Choice, *, epochs_trained: int) -> str:
    """The one sentence (less its ending) that says how the epochs and thresholds were chosen."""
    images = choice.final_images
    if choice.method == "none":
        return (
            f"Nothing held out: {epochs_trained} epochs on all {images} training images; "
            "the thresholds were chosen on the training images"
        )
    held = len(choice.validation_images)
    held_out = (
        f"{held} held-out training image{'s' if held != 1 else ''} ({choice.validation_groups} "
        f"group{'s' if choice.validation_groups != 1 else ''})"
    )
    if choice.method == "holdout":
        return (
            f"Epoch {choice.chosen_epoch} and the thresholds were chosen on {held_out}; the model of "
            f"that epoch, trained on the other {images} images, is the final one"
        )
    chosen = f"The thresholds were chosen on {held_out}, whose best epoch was {choice.chosen_epoch}"
    refit = f"then a fresh model trained on all {images} training images for"
    if choice.epochs_from == "config":
        return (
            f"{chosen}, and early stopping did not end the run; {refit} the configured "
            f"{epochs_trained} epochs"
        )
    return f"{chosen}; early stopping ended the run after {epochs_trained} epochs; {refit} as many epochs"


def model_card(
    *,
    config: TrainingConfig,
    preset: Preset,
    in_channels: int,
    evaluation: Evaluation,
    resolved: dict[str, Any],
    normalization: Normalization,
) -> ModelCard:
    """model.json: what inference needs besides the weights (the config's model type, classes, tile
    size and smallest object; the evaluation's thresholds and epochs)."""
    return ModelCard.from_record(
        config,
        preset=preset,
        in_channels=in_channels,
        normalization=normalization,
        suggested_threshold=evaluation.suggested_threshold,
        suggested_thresholds=evaluation.suggested_thresholds,
        instance_head=resolved_head(config),
        test_time_flips=config.flips_at_test,
        split_level=evaluation.selection.split_level if evaluation.selection else None,
        weights=WEIGHTS_FILE,
        epochs_trained=evaluation.epochs_trained,
        config=resolved,
    )


def write_model(predictor: Predictor, *, card: ModelCard, paths: MlPaths) -> None:
    """model/model.safetensors and model/model.json."""
    save_weights(predictor.model, paths.model_dir / WEIGHTS_FILE)
    write_json(paths.model_dir / CARD_FILE, card)
