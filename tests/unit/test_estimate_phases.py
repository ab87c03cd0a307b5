"""The estimate counts what the trainer will train: its held-out groups and its refit, by its own rule."""

from __future__ import annotations

import pytest

from segpipe.logic.estimate import estimate_training
from segpipe.logic.validate import TrainingDefaults
from segpipe.logic.validate.details import TrainingPhases, padded_megapixels
from segpipe.models import selection
from segpipe.models.coco import CocoImage
from segpipe.models.common import Preset
from tests.helpers.datasets import healthy_dataset, validate_dataset


def images(count: int, *, size: int = 100, groups: int | None = None) -> list[CocoImage]:
    """`count` square images of `size` px; with `groups`, image n belongs to group n % groups."""
    return [
        CocoImage(
            id=n + 1,
            file_name=f"img{n:04d}.tif",
            width=size,
            height=size,
            group=None if groups is None else f"slide-{n % groups}",
        )
        for n in range(count)
    ]


def test_few_held_out_groups_count_a_refit_over_every_training_image() -> None:
    # Given three ungrouped training images: one is held out, fewer than REFIT_BELOW_GROUPS
    phases = TrainingPhases.plan(images(3), tile=128)

    # Then the first phase trains on two (each padded to a 128 px tile), the refit on all three
    tile = 128 * 128 / 1e6
    assert phases.first_megapixels == pytest.approx(2 * tile)
    assert phases.refit_megapixels == pytest.approx(3 * tile)
    # and the held-out image is predicted at its own 100 px, not padded
    assert phases.held_out_megapixels == pytest.approx(100 * 100 / 1e6)


def test_many_held_out_groups_are_a_plain_holdout_without_a_refit() -> None:
    # Given 400 ungrouped images: about 40 groups held out, at least REFIT_BELOW_GROUPS
    many = images(400)
    held = selection.validation_groups((image.file_name for image in many), fraction=0.1)
    assert len(held) >= selection.REFIT_BELOW_GROUPS

    phases = TrainingPhases.plan(many, tile=64)

    # Then only the images left after the hold-out are trained on, once
    assert phases.refit_megapixels == 0.0
    assert phases.first_megapixels == pytest.approx((400 - len(held)) * 100 * 100 / 1e6)


def test_one_group_holds_nothing_out_and_trains_on_everything_once() -> None:
    phases = TrainingPhases.plan(images(6, groups=1), tile=64)

    assert phases.first_megapixels == pytest.approx(6 * 100 * 100 / 1e6)
    assert phases.refit_megapixels == 0.0
    assert phases.held_out_megapixels == 0.0


def test_groups_are_held_out_whole() -> None:
    # Given 12 images in 3 slides of 4, some slides (not all) held out by the trainer's rule
    grouped = images(12, groups=3)
    held = selection.validation_groups((f"slide-{n}" for n in range(3)), fraction=0.1)
    assert 1 <= len(held) < 3

    phases = TrainingPhases.plan(grouped, tile=64)

    # Then all four images of each held-out slide are left out of the first phase, none of the others
    assert phases.first_megapixels == pytest.approx((12 - 4 * len(held)) * 100 * 100 / 1e6)
    assert phases.refit_megapixels == pytest.approx(12 * 100 * 100 / 1e6)


def test_the_reports_estimate_counts_the_refit_of_a_small_dataset() -> None:
    # Given 40 ungrouped 512 px images (about 4 held out, so the trainer refits), 1000 epochs of ViT-B
    defaults = TrainingDefaults(preset=Preset.SAM_VIT_BASE, epochs=1000, tile_size=128)
    validation = validate_dataset(healthy_dataset(size=512), defaults=defaults)
    plan, details = validation.plan, validation.report.details
    assert plan is not None and details.estimate is not None
    phases = TrainingPhases.plan(plan.train.images, tile=128)
    assert 0 < phases.first_megapixels < phases.refit_megapixels

    # Then its hours are those of both phases, not of one pass of the epochs over the training images
    def hours(*, first: float, refit: float) -> float:
        return estimate_training(
            preset=Preset.SAM_VIT_BASE,
            epochs=1000,
            train_megapixels=first,
            refit_megapixels=refit,
            held_out_megapixels=phases.held_out_megapixels,
            eval_megapixels=padded_megapixels([*plan.train.images, *plan.test.images], tile=0),
        ).hours

    assert details.estimate.hours == hours(first=phases.first_megapixels, refit=phases.refit_megapixels)
    assert details.estimate.hours > hours(first=phases.refit_megapixels, refit=0.0) + 0.2
    assert "refitting on every training image" in details.estimate.basis
