"""The one evaluation loop: every image is predicted whole, measured, and handed to each hook; the
held-out loss and the prediction writer are hooks of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segpipe.models.common import ModelType
from segpipe.models.trainer_io import ImagePredictions
from segpipe_trainer.data import Sample
from segpipe_trainer.evaluation import ImagePrediction, evaluate_images
from segpipe_trainer.infer import Predictor, dense_maps
from segpipe_trainer.metrics import InstanceEvaluator, SemanticEvaluator
from segpipe_trainer.model import build_model
from segpipe_trainer.outputs import SplitOutputs, predict_split
from segpipe_trainer.paths import MlPaths
from segpipe_trainer.train import SegmentationLoss, evaluate_held_out, segmentation_loss, split_score
from tests.trainer.tiny_model import cpu_predictor, synthetic_sample

CLASSES = ["round", "long"]


def _samples(count: int) -> list[Sample]:
    return [
        synthetic_sample(seed=number, size=(48, 64), objects=3, file_name=f"folder/s{number}.tif")
        for number in range(count)
    ]


def _predictor(model_type: ModelType) -> Predictor:
    torch.manual_seed(0)
    model = build_model(preset="tiny", num_classes=2, model_type=model_type, in_channels=1)
    return cpu_predictor(model, model_type=model_type, tile_size=32, min_area=1)


@pytest.mark.parametrize("model_type", ["instance", "semantic"])
def test_every_image_reaches_every_hook_once_in_order_as_the_evaluator_measured_it(
    model_type: ModelType,
) -> None:
    predictor, samples = _predictor(model_type), _samples(3)
    first: list[ImagePrediction] = []
    second: list[str] = []

    evaluator = evaluate_images(
        predictor,
        samples=iter(samples),  # read one at a time, as the test split is
        class_names=CLASSES,
        hooks=[first.append, lambda prediction: second.append(prediction.sample.file_name)],
    )

    assert [p.sample.file_name for p in first] == second == [s.file_name for s in samples]
    direct = InstanceEvaluator(class_names=CLASSES) if model_type == "instance" else None
    semantic = SemanticEvaluator(class_names=CLASSES) if model_type == "semantic" else None
    for prediction, sample in zip(first, samples, strict=True):
        outputs = predictor.outputs(sample.image)
        instances = predictor.instances(dense_maps(outputs, num_classes=2))
        assert torch.equal(prediction.outputs, outputs)
        np.testing.assert_array_equal(prediction.instances.labels, instances.labels)
        np.testing.assert_array_equal(prediction.instances.scores, instances.scores)
        if direct is not None:
            direct.add(gt_labels=sample.labels, gt_classes=sample.classes, pred=instances)
        if semantic is not None:
            semantic.add(gt_classes=sample.class_map(), pred=instances)
    oracle = direct or semantic
    assert oracle is not None and evaluator.images == 3
    assert evaluator.result() == oracle.result()


def test_the_held_out_result_is_the_mean_whole_image_loss_and_the_best_score_of_the_sweep() -> None:
    predictor, samples = _predictor("instance"), _samples(2)
    loss_fn = SegmentationLoss(class_weights=torch.tensor([0.5, 1.0, 2.0]), num_classes=2)

    result = evaluate_held_out(predictor, samples=samples, loss_fn=loss_fn, class_names=CLASSES)

    losses = [
        float(
            segmentation_loss(
                predictor.outputs(sample.image)[None],
                torch.from_numpy(sample.class_map())[None],
                torch.from_numpy(np.asarray(sample.distance, dtype=np.float32))[None],
                class_weights=torch.tensor([0.5, 1.0, 2.0]),
                num_classes=2,
            )
        )
        for sample in samples
    ]
    assert result.loss == pytest.approx(float(np.mean(losses)), rel=1e-6)
    assert result.evaluation.images == 2
    assert result.score == split_score(result.evaluation, model_type="instance")


def test_a_split_writes_each_images_predictions_and_preview_and_held_out_images_write_nothing(
    tmp_path: Path,
) -> None:
    predictor, samples = _predictor("instance"), _samples(2)
    paths = MlPaths(root=tmp_path / "with")
    outputs = SplitOutputs(split="test", paths=paths, class_names=CLASSES, score_floor=0.0)

    evaluator = predict_split(predictor, samples=samples, class_names=CLASSES, outputs=outputs)
    predict_split(predictor, samples=samples, class_names=CLASSES, outputs=None)

    assert evaluator.images == 2
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    stems = [f"folder__s{n}" for n in range(2)]
    assert written == sorted(
        [f"with/output/data/predictions/test/{stem}.json" for stem in stems]
        + [f"with/output/data/previews/{stem}.png" for stem in stems]
    ), written
    for sample, stem in zip(samples, stems, strict=True):
        found = ImagePredictions.model_validate(
            json.loads((paths.predictions_dir("test") / f"{stem}.json").read_text())
        )
        assert (found.file_name, found.split, found.preview) == (sample.file_name, "test", f"{stem}.png")
        assert (found.width, found.height) == (64, 48)
