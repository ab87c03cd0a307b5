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

from segpipe.models.common import Preset
from segpipe.models.trainer_io import (
    Evaluation,
    ImagePredictions,
    ModelCard,
    Normalization,
    SplitEvaluation,
    TrainingConfig,
    prediction_stem,
)
from segpipe_trainer.data import Sample
from segpipe_trainer.geometry import objects_from_instances
from segpipe_trainer.images import write_preview
from segpipe_trainer.infer import Predictor, dense_maps
from segpipe_trainer.metrics import InstanceEvaluator, SemanticEvaluator, suggest_thresholds
from segpipe_trainer.paths import MlPaths
from segpipe_trainer.train import save_weights

logger = logging.getLogger(__name__)

SplitName = Literal["train", "test"]
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"


def write_json(path: Path, payload: BaseModel | dict[str, Any]) -> None:
    """Write JSON atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        payload.model_dump_json(indent=2) if isinstance(payload, BaseModel) else json.dumps(payload, indent=2)
    )
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


@dataclass(frozen=True)
class SplitOutputs:
    """Where one split's predictions and previews go; None writes nothing (validation)."""

    split: SplitName
    paths: MlPaths
    class_names: Sequence[str]
    score_floor: float


def evaluate_split(
    predictor: Predictor,
    *,
    samples: Iterable[Sample],
    class_names: Sequence[str],
    outputs: SplitOutputs | None,
) -> SplitEvaluation:
    """Predict every image of a split, feed the split's evaluator, and write predictions and previews."""
    evaluator: InstanceEvaluator | SemanticEvaluator
    if predictor.model_type == "instance":
        evaluator = InstanceEvaluator(class_names=class_names)
    else:
        evaluator = SemanticEvaluator(class_names=class_names)
    count = 0
    for sample in samples:
        maps = dense_maps(predictor.outputs(sample.image), num_classes=predictor.num_classes)
        instances = predictor.instances(maps)
        if isinstance(evaluator, InstanceEvaluator):
            evaluator.add(
                gt_labels=np.asarray(sample.labels), gt_classes=np.asarray(sample.classes), pred=instances
            )
        else:
            evaluator.add(gt_classes=sample.class_map(), pred=instances)
        if outputs is not None:
            _write_image_outputs(sample, instances=instances, outputs=outputs)
        count += 1
    logger.info("Evaluated %d images%s", count, f" of {outputs.split}" if outputs else "")
    return evaluator.result()


def _write_image_outputs(sample: Sample, *, instances: Any, outputs: SplitOutputs) -> None:
    stem = prediction_stem(sample.file_name)
    preview_name = f"{stem}.png"
    write_preview(np.asarray(sample.image, dtype=np.float32), path=outputs.paths.previews_dir / preview_name)
    predictions = ImagePredictions(
        file_name=sample.file_name,
        width=sample.width,
        height=sample.height,
        split=outputs.split,
        preview=preview_name,
        objects=objects_from_instances(
            instances, class_names=outputs.class_names, score_floor=outputs.score_floor
        ),
    )
    write_json(outputs.paths.predictions_dir(outputs.split) / f"{stem}.json", predictions)


def build_evaluation(
    *,
    config: TrainingConfig,
    train: SplitEvaluation,
    test: SplitEvaluation | None,
    epochs_trained: int,
    best_epoch: int | None,
) -> Evaluation:
    """evaluation.json: both splits and the suggested thresholds (tuned on test, or on train without one)."""
    tuned_on: Literal["test", "train"] = "test" if test is not None and test.images > 0 else "train"
    threshold, per_class = suggest_thresholds(
        test if tuned_on == "test" and test else train, model_type=config.model_type
    )
    return Evaluation(
        model_type=config.model_type,
        classes=list(config.classes),
        suggested_threshold=threshold,
        suggested_thresholds=per_class,
        suggested_from=tuned_on,
        train=train,
        test=test,
        epochs_trained=epochs_trained,
        best_epoch=best_epoch,
    )


def model_card(
    *,
    config: TrainingConfig,
    preset: Preset,
    in_channels: int,
    evaluation: Evaluation,
    resolved: dict[str, Any],
    normalization: Normalization,
) -> ModelCard:
    """model.json: what inference needs besides the weights."""
    return ModelCard(
        preset=preset,
        model_type=config.model_type,
        classes=list(config.classes),
        tile_size=config.tile_size,
        in_channels=in_channels,
        normalization=normalization,
        suggested_threshold=evaluation.suggested_threshold,
        suggested_thresholds=evaluation.suggested_thresholds,
        min_object_area=config.min_object_area,
        weights=WEIGHTS_FILE,
        epochs_trained=evaluation.epochs_trained,
        config=resolved,
    )


def write_model(predictor: Predictor, *, card: ModelCard, paths: MlPaths) -> None:
    """model/model.safetensors and model/model.json."""
    save_weights(predictor.model, paths.model_dir / WEIGHTS_FILE)
    write_json(paths.model_dir / CARD_FILE, card)
