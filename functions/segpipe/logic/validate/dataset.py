"""Dataset rules: unique ids, the requested classes, image statuses, and what the scan found."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from segpipe.logic.validate.issues import Issues, examples, listing
from segpipe.logic.validate.loading import Dataset
from segpipe.logic.validate.scan import Scan
from segpipe.logic.validate.thresholds import EXAMPLES, Rules
from segpipe.models.coco import CocoCategory, CocoImage
from segpipe.models.report import ErrorCode, WarningCode


@dataclass(frozen=True)
class Classes:
    """The request's classes resolved against the dataset's categories."""

    included: list[CocoCategory]  # in request order
    excluded: list[CocoCategory]
    unknown: list[str]

    @property
    def included_ids(self) -> set[int]:
        return {category.id for category in self.included}

    @property
    def excluded_ids(self) -> set[int]:
        return {category.id for category in self.excluded}


@dataclass(frozen=True)
class Images:
    completed: list[CocoImage]
    unfinished: list[CocoImage]
    without_status: int  # unfinished only because the dataset mixes images with and without status


def duplicates(values: Sequence[Any]) -> list[Any]:
    """The values that occur more than once."""
    if len(set(values)) == len(values):  # the common case: no Counter over a million ids
        return []
    return [value for value, count in Counter(values).items() if count > 1]


def check_duplicates(dataset: Dataset, *, annotation_ids: Sequence[int], classes: Sequence[str]) -> Issues:
    """Image ids, file names, category ids, requested class names and annotation ids must be unique."""
    found = {
        "image ids": duplicates([image.id for image in dataset.images]),
        "image file names": duplicates([image.file_name for image in dataset.images]),
        "category ids": duplicates([category.id for category in dataset.categories]),
        "category names": [
            name for name in duplicates([category.name for category in dataset.categories]) if name in classes
        ],
        "annotation ids": duplicates(annotation_ids),
    }
    found = {kind: values for kind, values in found.items() if values}
    issues = Issues()
    if found:
        kinds = ", ".join(f"{len(values)} {kind}" for kind, values in found.items())
        issues.error(
            ErrorCode.DUPLICATE_IDS,
            f"The dataset repeats {kinds}. "
            "Each id, file name and requested class name must be unique; "
            "re-export the dataset or renumber the duplicates.",
            **{kind.replace(" ", "_"): values[:EXAMPLES] for kind, values in found.items()},
            counts={kind.replace(" ", "_"): len(values) for kind, values in found.items()},
        )
    return issues


def no_classes(*, available: list[str] | None) -> Issues:
    """`no_classes_selected`, naming the dataset's categories when they are known."""
    names = f": {listing(available)}" if available else ""
    found = Issues()
    found.error(
        ErrorCode.NO_CLASSES_SELECTED,
        f"The request selects no classes. List the category names to train on in `classes`{names}.",
        classes=[],
        available=available[:100] if available else [],
    )
    return found


def resolve_classes(requested: Sequence[str], categories: Sequence[CocoCategory]) -> tuple[Classes, Issues]:
    """The requested classes among the categories (the first category of a name counts)."""
    by_name: dict[str, CocoCategory] = {}
    for category in categories:
        by_name.setdefault(category.name, category)
    found = no_classes(available=sorted(by_name)) if not requested else Issues()
    included = [by_name[name] for name in requested if name in by_name]
    included_ids = {category.id for category in included}
    unknown = [name for name in requested if name not in by_name]
    if unknown:
        available = sorted(by_name)
        found.error(
            ErrorCode.UNKNOWN_CLASS,
            f"The dataset has no class {listing(unknown)}. "
            f"Use category names from the dataset: {listing(available)}.",
            unknown=unknown,
            available=available[:100],
            suggestions={name: difflib.get_close_matches(name, available, n=3) for name in unknown},
        )
    excluded = [category for category in categories if category.id not in included_ids]
    return Classes(included=included, excluded=excluded, unknown=unknown), found


def split_by_status(images: Sequence[CocoImage]) -> tuple[Images, Issues]:
    """Completed images are used; without any status in the dataset, every image counts as completed."""
    found = Issues()
    if all(image.status is None for image in images):
        return Images(completed=list(images), unfinished=[], without_status=0), found
    completed = [image for image in images if image.status == "completed"]
    unfinished = [image for image in images if image.status != "completed"]
    without_status = sum(1 for image in unfinished if image.status is None)
    if without_status:
        found.warn(
            WarningCode.IMAGES_WITHOUT_STATUS,
            f"{without_status} images have no status while others do; "
            "they are treated as unfinished and not used. "
            'Set "status": "completed" on the ones that are fully annotated.',
            images=without_status,
            examples=examples([image.file_name for image in unfinished if image.status is None]),
        )
    if not completed:
        found.error(
            ErrorCode.NO_COMPLETED_IMAGES,
            f"None of the {len(images)} images is completed. "
            'Finish annotating images and set their status to "completed" '
            "(only completed images are used for training).",
            images=len(images),
            statuses=dict(Counter(image.status or "none" for image in images)),
        )
    return Images(completed=completed, unfinished=unfinished, without_status=without_status), found


@dataclass(frozen=True)
class Scanned:
    """A dataset after the scan: what the annotation rules read."""

    dataset: Dataset
    classes: Classes
    images: Images
    scan: Scan


def check_annotations(scanned: Scanned, *, rules: Rules) -> Issues:
    """Images exist; broken annotations are few; enough valid ones per class; negatives are not most."""
    scan, classes, images = scanned.scan, scanned.classes, scanned.images
    found = Issues()
    if not scanned.dataset.images:
        found.error(
            ErrorCode.NO_COMPLETED_IMAGES,
            "The dataset has no images. Add images and their annotations to annotations.json.",
            images=0,
        )
    broken = sum(scan.broken.values())
    if broken:
        found.extend(_broken(scan, broken=broken, candidates=scan.valid + broken, rules=rules))
    if classes.included and images.completed and scan.valid <= rules.min_annotations:
        found.error(
            ErrorCode.TOO_FEW_ANNOTATIONS,
            f"A training needs more than {rules.min_annotations} valid annotations "
            f"of the requested classes on completed images; this request has {scan.valid}. "
            "Annotate more objects, mark more images as completed, or include more classes.",
            included_annotations=scan.valid,
            required_more_than=rules.min_annotations,
            broken_annotations=broken,
            annotations_on_unfinished_images=scan.unfinished,
        )
    for category in classes.included:
        if images.completed and not scan.areas.get(category.id):
            found.error(
                ErrorCode.CLASS_WITHOUT_ANNOTATIONS,
                f"Class {category.name!r} has no valid annotation on a completed image. "
                "Annotate it, or remove it from `classes`.",
                class_name=category.name,
                category_id=category.id,
            )
    found.extend(_ignored(scan, classes=classes))
    found.extend(_negatives(scan, images=images, rules=rules))
    return found


def _broken(scan: Scan, *, broken: int, candidates: int, rules: Rules) -> Issues:
    share = broken / candidates
    context = {
        "broken": broken,
        "candidates": candidates,
        "share": round(share, 4),
        "max_share": rules.max_broken_share,
        "reasons": dict(scan.broken),
        "examples": scan.broken_examples,
    }
    reasons = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in scan.broken.most_common())
    found = Issues()
    if share > rules.max_broken_share:
        found.error(
            ErrorCode.INVALID_ANNOTATIONS,
            f"{broken} of {candidates} annotations ({share:.0%}) are broken ({reasons}); "
            f"more than {rules.max_broken_share:.0%} suggests a faulty export. "
            "Fix the export; `examples` lists annotation ids.",
            **context,
        )
    else:
        found.warn(
            WarningCode.INVALID_ANNOTATIONS_DROPPED,
            f"{broken} of {candidates} annotations ({share:.1%}) are broken ({reasons}) and are left out. "
            "Fix them to use them; `examples` lists annotation ids.",
            **context,
        )
    return found


def _ignored(scan: Scan, *, classes: Classes) -> Issues:
    excluded = excluded_counts(classes, scan=scan)
    found = Issues()
    if excluded or scan.unfinished:
        found.warn(
            WarningCode.ANNOTATIONS_IGNORED,
            f"{sum(excluded.values())} annotations of classes not requested "
            f"and {scan.unfinished} annotations on unfinished images are not used. "
            "Add classes to `classes`, or complete the images, to use them.",
            excluded_classes=excluded,
            annotations_on_unfinished_images=scan.unfinished,
        )
    return found


def _negatives(scan: Scan, *, images: Images, rules: Rules) -> Issues:
    negatives = scan.negatives
    found = Issues()
    if images.completed and negatives / len(images.completed) > rules.negative_image_share:
        found.warn(
            WarningCode.IMAGES_WITHOUT_ANNOTATIONS,
            f"{negatives} of {len(images.completed)} completed images hold no annotation "
            "of the requested classes. "
            "They are used as negatives (everything in them is background); "
            "if some are not fully annotated, set their status to in_progress.",
            images=negatives,
            included_images=len(images.completed),
        )
    return found


def excluded_counts(classes: Classes, *, scan: Scan) -> dict[str, int]:
    """Annotations per class that the request leaves out."""
    return {
        category.name: scan.excluded[category.id]
        for category in classes.excluded
        if scan.excluded[category.id]
    }
