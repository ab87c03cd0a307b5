"""The one loop over a split's whole images: predict, find the objects, measure, hand on to hooks.

Every evaluation of annotated images goes through `evaluate_images`: the held-out images after each
epoch (a hook sums their loss, `train.HeldOutLoss`) and the final train and test splits (a hook
writes each image's predictions and preview, `outputs.SplitOutputs.write`). Each image is predicted
whole by the sliding window (the way the final model is used), turned into objects by the
predictor's post-processing and added to the split's evaluator; then every hook sees it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from segpipe.models.common import ModelType
from segpipe_trainer.data import Sample
from segpipe_trainer.infer import Predictor, dense_maps
from segpipe_trainer.metrics import InstanceEvaluator, SemanticEvaluator
from segpipe_trainer.postprocess import Instances

Evaluator = InstanceEvaluator | SemanticEvaluator


@dataclass(frozen=True)
class ImagePrediction:
    """One annotated image as the model saw it: raw outputs (float32 O x H x W, on the CPU) and the
    objects post-processing found in them."""

    sample: Sample
    outputs: torch.Tensor
    instances: Instances


class ImageHook(Protocol):
    """Called with each image once it is predicted and measured (a loss sum, an output writer)."""

    def __call__(self, prediction: ImagePrediction, /) -> None: ...


def new_evaluator(model_type: ModelType, *, class_names: Sequence[str]) -> Evaluator:
    """An empty evaluator of the model type's metrics."""
    if model_type == "instance":
        return InstanceEvaluator(class_names=class_names)
    return SemanticEvaluator(class_names=class_names)


def add_image(evaluator: Evaluator, *, sample: Sample, instances: Instances) -> None:
    """Add one image's predicted objects against its annotations."""
    if isinstance(evaluator, InstanceEvaluator):
        evaluator.add(
            gt_labels=np.asarray(sample.labels), gt_classes=np.asarray(sample.classes), pred=instances
        )
    else:
        evaluator.add(gt_classes=sample.class_map(), pred=instances)


def predict_image(predictor: Predictor, sample: Sample) -> ImagePrediction:
    """One image predicted whole and turned into objects."""
    outputs = predictor.outputs(sample.image)
    instances = predictor.instances(dense_maps(outputs, num_classes=predictor.num_classes))
    return ImagePrediction(sample=sample, outputs=outputs, instances=instances)


def evaluate_images(
    predictor: Predictor,
    *,
    samples: Iterable[Sample],
    class_names: Sequence[str],
    hooks: Sequence[ImageHook] = (),
) -> Evaluator:
    """Predict and measure every image of `samples` (read one at a time), calling each hook with
    every image in turn; the evaluator holding the split's measurements."""
    evaluator = new_evaluator(predictor.model_type, class_names=class_names)
    for sample in samples:
        prediction = predict_image(predictor, sample)
        add_image(evaluator, sample=sample, instances=prediction.instances)
        for hook in hooks:
            hook(prediction)
    return evaluator
