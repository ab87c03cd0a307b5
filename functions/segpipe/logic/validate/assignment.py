"""Split rules: the test set the request asks for, and what assigning it left."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from segpipe.logic.split import SplitAssignment
from segpipe.logic.validate.dataset import Images
from segpipe.logic.validate.issues import Issues, examples, listing
from segpipe.logic.validate.thresholds import EXAMPLES
from segpipe.models.coco import CocoImage
from segpipe.models.report import ErrorCode, WarningCode
from segpipe.models.request import ImagesTestSet, NoTestSet, TestSet


def check_assignment(
    assignment: SplitAssignment, *, test_set: TestSet, all_images: Sequence[CocoImage], images: Images
) -> Issues:
    """A test set exists (or is absent on purpose), training keeps images, no group is split."""
    found = Issues()
    if isinstance(test_set, NoTestSet):
        found.warn(
            WarningCode.NO_TEST_SET,
            "There is no test set, so the model is judged on its own training images only. "
            'That is fine for early versions; use {"strategy": "fraction"} once the dataset grows.',
            strategy="none",
        )
    elif isinstance(test_set, ImagesTestSet):
        found.extend(_check_listed_images(assignment, all_images=all_images))
    elif images.completed and not assignment.test:
        found.warn(
            WarningCode.NO_TEST_SET,
            f"The fraction {test_set.fraction} drew no test image from {len(images.completed)} completed "
            "images (groups go to one side as a whole). "
            "Raise the fraction, change the seed, or list test images.",
            strategy="fraction",
            fraction=test_set.fraction,
            seed=test_set.seed,
        )
    if images.completed and not assignment.train:
        found.error(
            ErrorCode.EMPTY_TRAINING_SET,
            f"The test set takes all {len(images.completed)} completed images, leaving nothing to train on. "
            "Lower the fraction, change the seed, add images or groups, or list fewer test images.",
            test_images=len(assignment.test),
            held_out=len(assignment.held_out),
        )
    if assignment.held_out:
        found.warn(
            WarningCode.GROUP_MEMBERS_HELD_OUT,
            f"{len(assignment.held_out)} images share a group with listed test images but are not listed; "
            "they are left out of both sets so no group is split. List the whole groups to test on them.",
            images=len(assignment.held_out),
            groups=sorted({image.group for image in assignment.held_out if image.group})[:EXAMPLES],
        )
    return found


def _check_listed_images(assignment: SplitAssignment, *, all_images: Sequence[CocoImage]) -> Issues:
    all_names = {image.file_name for image in all_images}
    unfinished = [name for name in assignment.unmatched if name in all_names]
    unknown = [name for name in assignment.unmatched if name not in all_names]
    found = Issues()
    if unknown:
        found.error(
            ErrorCode.UNKNOWN_TEST_IMAGE,
            f"{len(unknown)} listed test images are not in the dataset: {listing(unknown)}. "
            "Use file_name values from annotations.json.",
            unknown=examples(unknown),
            count=len(unknown),
            suggestions={name: difflib.get_close_matches(name, all_names, n=3) for name in unknown[:3]},
        )
    if unfinished:
        found.warn(
            WarningCode.TEST_IMAGES_NOT_COMPLETED,
            f"{len(unfinished)} listed test images are not completed and are left out: "
            f"{listing(unfinished)}. "
            'Finish them and set "status": "completed" to test on them.',
            images=examples(unfinished),
            count=len(unfinished),
        )
    return found
