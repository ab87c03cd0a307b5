"""The test set only measures: every choice is made on training images, and says how it was made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from segpipe.logic.validate.details import TrainingPhases, padded_megapixels
from segpipe.models.coco import CocoDataset, CocoImage
from segpipe.models.trainer_io import (
    THRESHOLDS,
    EpochsSource,
    Evaluation,
    Metrics,
    ModelCard,
    Progress,
    SplitEvaluation,
    ThresholdPoint,
    TrainingConfig,
)
from segpipe_trainer.cli import run
from segpipe_trainer.data import ImageEntry, image_entries
from segpipe_trainer.job import REFIT_BELOW_GROUPS, RefitEpochs, SelectionPlan, refit_epochs
from segpipe_trainer.outputs import Choice, build_evaluation
from segpipe_trainer.paths import MlPaths
from segpipe_trainer.train import TrainState
from tests.trainer.trainer_testkit import OLDER_CARD, DatasetSpec, hyperparameters, make_ml_root


def _entries(groups: int, *, per_group: int = 1) -> list[ImageEntry]:
    images = [
        CocoImage(
            id=n + 1, file_name=f"g{n // per_group}/i{n}.tif", width=8, height=8, group=f"g{n // per_group}"
        )
        for n in range(groups * per_group)
    ]
    return image_entries(CocoDataset(images=images, categories=[], annotations=[]))


def test_few_validation_groups_refit_on_every_training_image() -> None:
    plan = SelectionPlan.build(_entries(3), fraction=0.3)

    assert plan.method == "refit"
    assert plan.validation and plan.fit and len(plan.validation) + len(plan.fit) == 3


def test_many_validation_groups_are_a_plain_holdout() -> None:
    plan = SelectionPlan.build(_entries(400), fraction=0.1)

    assert len({entry.group for entry in plan.validation}) >= REFIT_BELOW_GROUPS
    assert plan.method == "holdout"


def test_one_group_or_no_fraction_holds_nothing_out() -> None:
    assert SelectionPlan.build(_entries(1, per_group=4), fraction=0.5).method == "none"
    assert SelectionPlan.build(_entries(5), fraction=0.0).method == "none"


@pytest.mark.parametrize(("groups", "per_group"), [(1, 3), (2, 1), (3, 4), (12, 1), (90, 1), (400, 2)])
def test_the_reports_estimate_plans_the_phases_the_trainer_runs(groups: int, per_group: int) -> None:
    # Given a training split of `groups` groups, as the trainer and the validation report read it
    entries = _entries(groups, per_group=per_group)
    plan = SelectionPlan.build(entries, fraction=TrainingConfig.model_fields["validation_fraction"].default)

    phases = TrainingPhases.plan([entry.image for entry in entries], tile=8)

    # Then the estimate's first phase is the trainer's fit images and its refit the trainer's refit
    assert phases.first_megapixels == pytest.approx(padded_megapixels([e.image for e in plan.fit], tile=8))
    assert (phases.refit_megapixels > 0) == (plan.method == "refit")


# --- Thresholds from the held-out images -------------------------------------------------------


def _instance_split(
    *, scores: dict[str, float], classes: tuple[str, ...] = ("round", "long")
) -> SplitEvaluation:
    """A sweep whose F1 peaks at scores[name] for each class present; absent classes have no objects."""

    def row(name: str, threshold: float) -> Metrics:
        if name not in scores:
            return Metrics(tp=0, fp=0, fn=0)
        f1 = 1 - abs(threshold - scores[name])
        return Metrics(tp=10, fp=1, fn=1, f1=f1)

    sweep = []
    for threshold in THRESHOLDS:
        per_class = {name: row(name, threshold) for name in classes}
        present = [m.f1 for m in per_class.values() if m.f1 is not None]
        overall = Metrics(tp=10, fp=1, fn=1, f1=min(present) if present else None)
        sweep.append(ThresholdPoint(threshold=threshold, overall=overall, per_class=per_class))
    return SplitEvaluation(images=1, objects=10, sweep=sweep)


def _config() -> TrainingConfig:
    return TrainingConfig(
        model_type="instance", classes=["round", "long"], preset="tiny", epochs=3, tile_size=64, seed=0
    )


def test_thresholds_come_from_validation_and_a_class_it_lacks_from_train() -> None:
    train = _instance_split(scores={"round": 0.3, "long": 0.3})
    validation = _instance_split(scores={"round": 0.8})
    test = _instance_split(scores={"round": 0.15, "long": 0.15})
    choice = Choice(
        method="refit",
        validation_images=["a.tif"],
        validation_groups=1,
        validation=validation,
        chosen_epoch=2,
        final_images=3,
    )

    evaluation = build_evaluation(config=_config(), train=train, test=test, choice=choice, epochs_trained=2)

    assert evaluation.suggested_from == "validation"
    assert evaluation.suggested_threshold == pytest.approx(0.8)
    assert evaluation.suggested_thresholds["round"] == pytest.approx(0.8)
    assert evaluation.suggested_thresholds["long"] == pytest.approx(0.3)
    assert evaluation.selection is not None
    assert evaluation.selection.thresholds_from == {"round": "validation", "long": "train"}
    assert (evaluation.selection.method, evaluation.selection.chosen_epoch) == ("refit", 2)
    assert evaluation.selection.epochs_from == "validation" and evaluation.selection.final_images == 3
    assert "test set only measures" in evaluation.selection.summary


def test_without_validation_the_training_images_choose_and_say_so() -> None:
    train = _instance_split(scores={"round": 0.3, "long": 0.3})
    choice = Choice(
        method="none",
        validation_images=[],
        validation_groups=0,
        validation=None,
        chosen_epoch=None,
        final_images=4,
    )

    evaluation = build_evaluation(
        config=_config(),
        train=train,
        test=_instance_split(scores={"round": 0.9}),
        choice=choice,
        epochs_trained=3,
    )

    assert evaluation.suggested_from == "train" and evaluation.suggested_threshold == pytest.approx(0.3)
    assert evaluation.selection is not None and evaluation.selection.epochs_from == "config"
    assert evaluation.selection.threshold_from == "train"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (TrainState(epoch=12, best_epoch=2, stale_epochs=10, finished=True), RefitEpochs(12, "validation")),
        (TrainState(epoch=20, best_epoch=5, stale_epochs=15, finished=True), RefitEpochs(20, "config")),
        (TrainState(epoch=20, best_epoch=20, finished=True), RefitEpochs(20, "config")),
    ],
    ids=["stopped-early", "ran-every-epoch-best-early", "ran-every-epoch-best-last"],
)
def test_a_refit_trains_every_epoch_unless_early_stopping_cut_the_first_phase(
    state: TrainState, expected: RefitEpochs
) -> None:
    assert refit_epochs(state, configured=20) == expected


def _refit_evaluation(*, held_out: list[str], epochs_from: EpochsSource, epochs_trained: int) -> Evaluation:
    """evaluation.json of a refit whose held-out images' best epoch was 2, of 3 training images."""
    choice = Choice(
        method="refit",
        validation_images=held_out,
        validation_groups=1,
        validation=_instance_split(scores={"round": 0.8}),
        chosen_epoch=2,
        final_images=3,
        epochs_from=epochs_from,
    )
    return build_evaluation(
        config=_config(),
        train=_instance_split(scores={"round": 0.3}),
        test=None,
        choice=choice,
        epochs_trained=epochs_trained,
    )


def test_a_refit_for_the_configured_epochs_says_so() -> None:
    evaluation = _refit_evaluation(held_out=["a.tif"], epochs_from="config", epochs_trained=3)

    assert evaluation.selection is not None
    assert evaluation.selection.epochs_from == "config" and evaluation.selection.chosen_epoch == 2
    assert evaluation.selection.final_epochs == evaluation.epochs_trained == 3
    assert evaluation.selection.threshold_from == "validation"
    assert evaluation.selection.summary == (
        "The thresholds were chosen on 1 held-out training image (1 group), whose best epoch was 2, and "
        "early stopping did not end the run; then a fresh model trained on all 3 training images for the "
        "configured 3 epochs; the test set only measures."
    )


def test_a_refit_after_early_stopping_trains_as_long_as_the_first_phase_and_says_so() -> None:
    evaluation = _refit_evaluation(held_out=["a.tif", "b.tif"], epochs_from="validation", epochs_trained=12)

    assert evaluation.selection is not None and evaluation.selection.epochs_from == "validation"
    assert evaluation.selection.summary == (
        "The thresholds were chosen on 2 held-out training images (1 group), whose best epoch was 2; early "
        "stopping ended the run after 12 epochs; then a fresh model trained on all 3 training images for "
        "as many epochs; the test set only measures."
    )


def test_an_evaluation_of_an_older_trainer_still_parses() -> None:
    older = {
        "model_type": "instance",
        "classes": ["a"],
        "suggested_threshold": 0.5,
        "suggested_from": "test",
        "train": {"images": 1, "sweep": []},
    }

    evaluation = Evaluation.model_validate(older)

    assert evaluation.selection is None and evaluation.intervals is None and evaluation.validation is None
    assert ModelCard.model_validate(OLDER_CARD).instance_head == "distance"


# --- End to end: the test annotations change nothing but the test figures ----------------------


def _annotate_where_predicted(root: Path, *, predictions: Path) -> None:
    """Replace the test annotations by another model's predicted outlines: wrong places, every one."""
    path = root / "input" / "data" / "split" / "test.json"
    coco: dict[str, Any] = json.loads(path.read_text())
    (image,) = coco["images"]
    category = {"round": 1, "long": 2}
    objects = json.loads(predictions.read_text())["objects"]
    coco["annotations"] = [
        {
            "id": 9000 + number,
            "image_id": image["id"],
            "category_id": category[obj["category"]],
            "segmentation": obj["segmentation"],
            "iscrowd": 0,
        }
        for number, obj in enumerate(objects)
    ]
    path.write_text(json.dumps(coco))


def _train_in_process(root: Path) -> None:
    torch.set_num_threads(1)
    assert run(MlPaths(root=root)) == 0
    assert not (root / "output" / "failure").exists()


@pytest.mark.slow
def test_moving_the_test_annotations_changes_only_the_test_figures(tmp_path: Path) -> None:
    """Given two trainings whose test annotations differ (the second's lie where the first model
    predicted objects, not where they are), the choices, weights and test predictions are the same;
    only the test figures differ."""
    roots = []
    for name in ("right", "moved"):
        root = make_ml_root(
            tmp_path / name,
            params=hyperparameters(
                epochs=2, steps_per_epoch=4, validation_fraction=0.3, early_stopping_patience=3
            ),
            train=DatasetSpec(images=3, size=(64, 64), objects=4),
            test=[DatasetSpec(images=1, size=(96, 96), objects=6, seed=5)],
        )
        if roots:
            _annotate_where_predicted(root, predictions=_test_predictions(roots[0]))
        _train_in_process(root)
        roots.append(root)

    right, moved = (
        Evaluation.model_validate_json((root / "output" / "data" / "evaluation.json").read_text())
        for root in roots
    )
    assert right.selection is not None and right.selection.method == "refit"
    assert right.suggested_from == moved.suggested_from == "validation"
    assert right.suggested_threshold == moved.suggested_threshold
    assert right.suggested_thresholds == moved.suggested_thresholds
    assert right.best_epoch == moved.best_epoch and right.epochs_trained == moved.epochs_trained
    assert right.validation == moved.validation and right.train == moved.train
    assert _test_predictions(roots[0]).read_text() == _test_predictions(roots[1]).read_text()
    weights = [(root / "model" / "model.safetensors").read_bytes() for root in roots]
    assert weights[0] == weights[1]
    assert right.test is not None and moved.test is not None
    lowest = moved.test.sweep[0].overall
    assert lowest.predicted_objects and lowest.f1 == 1.0, "annotations drawn from the predictions match them"
    assert right.test.sweep[0].overall.f1 != 1.0
    progress = Progress.model_validate_json((roots[0] / "checkpoints" / "progress.json").read_text())
    assert progress.phase == "done" and progress.epoch == 2 + right.epochs_trained  # both phases shown
    assert right.intervals is not None and moved.intervals is not None
    assert right.intervals.headline.metrics["f1"] != moved.intervals.headline.metrics["f1"]


def _test_predictions(root: Path) -> Path:
    (path,) = (root / "output" / "data" / "predictions" / "test").glob("*.json")
    return path
