"""Class rules: counts per class and side, balance, test-set size, and objects too small for the patch."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from operator import attrgetter

from segpipe.logic.split import SplitAssignment
from segpipe.logic.validate.dataset import Classes
from segpipe.logic.validate.issues import Issues
from segpipe.logic.validate.scan import Scan
from segpipe.logic.validate.thresholds import Rules
from segpipe.models.coco import CocoImage
from segpipe.models.report import ClassCounts, ErrorCode, WarningCode


def class_counts(
    classes: Classes, *, scan: Scan, assignment: SplitAssignment, rules: Rules
) -> list[ClassCounts]:
    """Valid annotations per included class: in all, per side, images holding them, median area."""
    train = _side_counts(assignment.train, scan=scan)
    test = _side_counts(assignment.test, scan=scan)
    return [
        ClassCounts(
            name=category.name,
            annotations=len(scan.areas.get(category.id, [])),
            train=train[category.id],
            test=test[category.id],
            images=len(set(scan.image_ids.get(category.id, []))),
            median_area=median(scan.areas.get(category.id, []), sample=rules.median_sample),
        )
        for category in classes.included
    ]


def _side_counts(images: Sequence[CocoImage], *, scan: Scan) -> Counter[int]:
    """Valid annotations per category id on `images` (from the image id of each, at C speed)."""
    on_side = {image.id for image in images}.__contains__
    return Counter({category: sum(map(on_side, ids)) for category, ids in scan.image_ids.items()})


def median(values: list[float], *, sample: int) -> float | None:
    """The median of `values` (of `sample` of them evenly spread, when there are more), to 2 decimals."""
    if not values:
        return None
    if len(values) > sample:
        step = len(values) / sample
        values = [values[int(index * step)] for index in range(sample)]
    ordered = sorted(values)
    middle = len(ordered) // 2
    value = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return round(value, 2)


def check_classes(counts: list[ClassCounts], *, assignment: SplitAssignment, rules: Rules) -> Issues:
    """Each present class is trained on, measured, and has enough examples; then balance and test size."""
    present = [item for item in counts if item.annotations]
    found = Issues()
    for item in present:
        if assignment.train and not item.train:
            found.error(
                ErrorCode.CLASS_MISSING_FROM_TRAINING_SET,
                f"Every annotation of class {item.name!r} is in the test set, so the model cannot learn it. "
                "Move some of its images to training (another seed, or fewer listed test images).",
                class_name=item.name,
                test=item.test,
            )
        if assignment.test and not item.test:
            found.warn(
                WarningCode.CLASS_MISSING_FROM_TEST_SET,
                f"The test set holds no annotation of class {item.name!r}, "
                "so it will not be measured on unseen images. "
                "Change the seed or list test images that show it.",
                class_name=item.name,
                train=item.train,
            )
        if item.annotations < rules.few_annotations_per_class:
            found.warn(
                WarningCode.FEW_ANNOTATIONS_FOR_CLASS,
                f"Class {item.name!r} has only {item.annotations} annotations; "
                f"fewer than {rules.few_annotations_per_class} rarely train a reliable model. "
                "Annotate more examples of it.",
                class_name=item.name,
                annotations=item.annotations,
                recommended_at_least=rules.few_annotations_per_class,
            )
    found.extend(_check_balance(present, rules=rules))
    found.extend(_check_test_size(counts, assignment=assignment, rules=rules))
    return found


def _check_balance(present: list[ClassCounts], *, rules: Rules) -> Issues:
    found = Issues()
    if len(present) < 2:
        return found
    rarest = min(present, key=attrgetter("annotations"))
    commonest = max(present, key=attrgetter("annotations"))
    ratio = commonest.annotations / rarest.annotations
    if ratio > rules.class_imbalance_ratio:
        found.warn(
            WarningCode.CLASS_IMBALANCE,
            f"Class {commonest.name!r} has {ratio:.0f} times as many annotations as {rarest.name!r}; "
            f"the model will favour {commonest.name!r}. "
            f"Annotate more {rarest.name!r} objects if it matters.",
            commonest=commonest.name,
            rarest=rarest.name,
            ratio=round(ratio, 1),
            max_ratio=rules.class_imbalance_ratio,
        )
    return found


def _check_test_size(counts: list[ClassCounts], *, assignment: SplitAssignment, rules: Rules) -> Issues:
    test_images = len(assignment.test)
    test_annotations = sum(item.test for item in counts)
    found = Issues()
    if test_images and (test_images < rules.min_test_images or test_annotations < rules.min_test_annotations):
        found.warn(
            WarningCode.SMALL_TEST_SET,
            f"The test set holds {test_images} images and {test_annotations} annotations; "
            "metrics on so few vary a lot between versions. "
            f"Aim for at least {rules.min_test_images} images and {rules.min_test_annotations} annotations.",
            test_images=test_images,
            test_annotations=test_annotations,
            min_images=rules.min_test_images,
            min_annotations=rules.min_test_annotations,
        )
    return found


def check_tiny_objects(classes: Classes, *, scan: Scan, patch: int, rules: Rules) -> Issues:
    """`tiny_objects` for classes with many objects narrower than half a patch."""
    shares = {
        category.name: round(scan.tiny[category.id] / len(scan.areas[category.id]), 3)
        for category in classes.included
        if scan.areas.get(category.id)
        and scan.tiny[category.id] / len(scan.areas[category.id]) > rules.tiny_object_share
    }
    found = Issues()
    if shares:
        found.warn(
            WarningCode.TINY_OBJECTS,
            f"Many objects of {', '.join(map(repr, shares))} are narrower than half a {patch} px ViT patch "
            f"({patch / 2:g} px), which the model resolves poorly. "
            "Upsample the images, or choose a preset with smaller patches.",
            patch_size=patch,
            tiny_share=shares,
            max_share=rules.tiny_object_share,
        )
    return found
