"""What the report tells before GPU money is spent (`TrainingDetails`), and the split plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from segpipe.logic import estimate
from segpipe.logic.split import PlannedAnnotation, SplitAssignment, SplitPlan, SplitSide
from segpipe.logic.validate.context import Context
from segpipe.logic.validate.dataset import Scanned, excluded_counts
from segpipe.logic.validate.scan import Scan
from segpipe.models import selection
from segpipe.models.coco import CocoImage
from segpipe.models.report import ClassCounts, Estimate, IgnoredCounts, ImageStats, TrainingDetails
from segpipe.models.request import FractionTestSet


@dataclass(frozen=True)
class Checked:
    """Everything the dataset rules established: the scanned dataset, its split, its counts."""

    scanned: Scanned
    stats: ImageStats
    assignment: SplitAssignment
    class_counts: list[ClassCounts]


def training_details(checked: Checked, *, context: Context) -> TrainingDetails:
    scanned, assignment, counts = checked.scanned, checked.assignment, checked.class_counts
    scan, images, training = scanned.scan, scanned.images, context.training
    valid = scan.valid
    return TrainingDetails(
        dataset=context.source.dataset,
        model_type=context.request.model_type,
        total_images=len(scanned.dataset.images),
        completed_images=len(images.completed),
        included_images=len(images.completed),
        train_images=len(assignment.train),
        test_images=len(assignment.test),
        total_annotations=scan.total,
        included_annotations=valid,
        train_annotations=sum(item.train for item in counts),
        test_annotations=sum(item.test for item in counts),
        images_without_annotations=scan.negatives,
        average_annotations_per_image=round(valid / len(images.completed), 2) if images.completed else 0.0,
        classes=counts,
        ignored=IgnoredCounts(
            excluded_classes=excluded_counts(scanned.classes, scan=scan),
            unfinished_images=len(images.unfinished),
            annotations_on_unfinished_images=scan.unfinished,
            invalid_annotations=sum(scan.broken.values()),
            images_held_out=len(assignment.held_out),
        ),
        images=checked.stats,
        estimate=_estimate(assignment, context=context),
        **training.details(),
    )


def _estimate(assignment: SplitAssignment, *, context: Context) -> Estimate:
    training = context.training
    phases = TrainingPhases.plan(assignment.train, tile=training.tile_size)
    return estimate.estimate_training(
        preset=training.preset,
        epochs=training.epochs,
        train_megapixels=phases.first_megapixels,
        refit_megapixels=phases.refit_megapixels,
        held_out_megapixels=phases.held_out_megapixels,
        eval_megapixels=padded_megapixels([*assignment.train, *assignment.test], tile=0),
        compute=context.request.compute,
    )


@dataclass(frozen=True)
class TrainingPhases:
    """The (padded) megapixels each phase of the trainer trains on, by its own selection rule."""

    first_megapixels: float  # the training images minus those held out to choose on
    refit_megapixels: float  # every training image when the trainer refits, else 0
    held_out_megapixels: float  # the held-out images at their own size (predicted, not trained)

    @classmethod
    def plan(
        cls, images: Sequence[CocoImage], *, tile: int, fraction: float = selection.VALIDATION_FRACTION
    ) -> TrainingPhases:
        """The trainer's plan for `images` (`segpipe.models.selection`): a group is an image's
        `group`, else its file name; the held-out groups are not trained on in the first phase."""
        held = selection.validation_groups(
            (selection.holdout_group(image) for image in images), fraction=fraction
        )
        held_out = [image for image in images if selection.holdout_group(image) in held]
        first = [image for image in images if selection.holdout_group(image) not in held]
        refits = selection.selection_method(len(held)) == "refit"
        return cls(
            first_megapixels=padded_megapixels(first, tile=tile),
            refit_megapixels=padded_megapixels(images, tile=tile) if refits else 0.0,
            held_out_megapixels=padded_megapixels(held_out, tile=0),
        )


def padded_megapixels(images: Sequence[CocoImage], *, tile: int) -> float:
    """Megapixels of `images`, each padded to at least `tile` on both sides."""
    return sum(max(image.width, tile) * max(image.height, tile) for image in images) / 1e6


def split_plan(checked: Checked, *, context: Context) -> SplitPlan:
    """What `split.render_manifests` writes: each side's images and their valid included annotations."""
    test_set = context.request.test_set
    included = checked.scanned.classes.included
    return SplitPlan(
        dataset=context.source.dataset,
        strategy=test_set.strategy,
        seed=test_set.seed if isinstance(test_set, FractionTestSet) else None,
        classes=[category.name for category in included],
        categories=included,
        train=_side(checked.assignment.train, scan=checked.scanned.scan),
        test=_side(checked.assignment.test, scan=checked.scanned.scan),
    )


def _side(images: list[CocoImage], *, scan: Scan) -> SplitSide:
    annotations: list[PlannedAnnotation] = []
    for image in images:
        annotations.extend(scan.slots[image.id].annotations)
    return SplitSide(images=images, annotations=annotations)
