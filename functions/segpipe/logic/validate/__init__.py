"""Validate a training request against its dataset, and plan the train/test split.

`validate_request` returns one report (errors block, warnings advise) and, when nothing blocks,
the `SplitPlan` that `split.render_manifests` writes. It reads the dataset through a
`DatasetStore` only: the annotations file, the folder's file list and the first bytes of a few
images. Pure Python and pydantic; no AWS, no environment.

Where things are (each module's docstring says more):

- `entry`: `validate_request`, the order of the checks and of the report.
- `context`: what every check reads (request, resolved training settings, dataset location,
  thresholds); `thresholds`: every threshold, in the frozen `Rules`.
- `issues`: the `Issues` a check returns, and how issues list names.
- `loading`: reading and parsing annotations.json (fast in chunks, or careful as a whole).
- `geometry`: polygon and RLE area and bounds; `scan`: the pass over every annotation.
- Rules by topic: `training` (base), `compute` (compute guard, estimate), `dataset` (ids,
  classes, statuses, annotations), `images` (formats, files, headers, output names),
  `assignment` (the test set), `classes` (per class, balance, test size, tiny objects).
- `details`: `TrainingDetails` and the split plan.

Rules worth knowing (the rule table is in docs/ARCHITECTURE.md, "Validation rules"):

- Status. When no image carries a `status`, every image counts as completed. As soon as one
  image carries one, only images marked `"completed"` are used: an image without a status in
  such a dataset is treated as unfinished (training on half-annotated images teaches the model
  that unannotated objects are background), and the report warns with
  `images_without_status`.
- Included annotations are the annotations of requested classes on completed images. A
  completed image without included annotations is kept as a negative example.
- Broken annotations (a ring with fewer than 3 points or an odd number of coordinates, zero
  area, a vertex more than `EDGE_TOLERANCE_PX` outside the image, a malformed RLE or one of
  another size, an unknown image or category id) are dropped with a warning, unless more than
  `MAX_BROKEN_SHARE` of the candidates are broken: then the dataset is refused, because so much
  breakage means the export is wrong rather than a few slips. Candidates are the annotations
  that are neither of an excluded class nor on an unfinished image.
- A sampled image header whose size differs from the COCO `width`/`height` is an error
  (`image_size_mismatch`): the polygons are in the COCO coordinate system, so the masks the
  trainer draws would not line up with the pixels, and the job would spend GPU hours learning
  from misplaced labels. The fix (re-export with the right sizes) is cheap; a wasted job is not.
- Missing `area` and `bbox` fields of valid annotations are filled in (shoelace area of the
  rings, bounds of the vertices), so the manifests work with COCO evaluators.

Performance (a million polygons in one Lambda): the file is parsed in chunks (`loading`), so
the whole parse tree never exists at once; each annotation is checked by exact field types and
falls back to pydantic only when it needs converting or refusing; a valid one keeps its
segmentation as the bytes the manifests embed. The garbage collector is paused while
validating: the parse creates millions of acyclic objects, and collections triggered on the way
would walk all of them again and again.
"""

from segpipe.logic.validate.compute import (
    ComputeAsk,
    ComputeRules,
    check_compute,
    check_estimate,
    compute_findings,
    estimate_findings,
)
from segpipe.logic.validate.entry import Validation, validate_request
from segpipe.logic.validate.geometry import Geometry, polygon_geometry, rle_counts, rle_geometry
from segpipe.logic.validate.images import (
    IMAGE_FORMATS,
    HeaderFindings,
    check_output_names,
    output_name_findings,
    read_headers,
    report_unreadable,
    spread_indices,
    unreadable_findings,
)
from segpipe.logic.validate.issues import Issues, examples, listing
from segpipe.logic.validate.loading import MAX_ANNOTATIONS_BYTES
from segpipe.logic.validate.thresholds import (
    CLASS_IMBALANCE_RATIO,
    EDGE_TOLERANCE_PX,
    EXAMPLES,
    FEW_ANNOTATIONS_PER_CLASS,
    HEADER_SAMPLE,
    MAX_BROKEN_SHARE,
    MEDIAN_SAMPLE,
    MIN_ANNOTATIONS,
    MIN_TEST_ANNOTATIONS,
    MIN_TEST_IMAGES,
    NEGATIVE_IMAGE_SHARE,
    RULES,
    TINY_OBJECT_SHARE,
    Rules,
)
from segpipe.logic.validate.training import TrainingDefaults

__all__ = [
    "CLASS_IMBALANCE_RATIO",
    "EDGE_TOLERANCE_PX",
    "EXAMPLES",
    "FEW_ANNOTATIONS_PER_CLASS",
    "HEADER_SAMPLE",
    "IMAGE_FORMATS",
    "MAX_ANNOTATIONS_BYTES",
    "MAX_BROKEN_SHARE",
    "MEDIAN_SAMPLE",
    "MIN_ANNOTATIONS",
    "MIN_TEST_ANNOTATIONS",
    "MIN_TEST_IMAGES",
    "NEGATIVE_IMAGE_SHARE",
    "RULES",
    "TINY_OBJECT_SHARE",
    "ComputeAsk",
    "ComputeRules",
    "Geometry",
    "HeaderFindings",
    "Issues",
    "Rules",
    "TrainingDefaults",
    "Validation",
    "check_compute",
    "check_estimate",
    "check_output_names",
    "compute_findings",
    "estimate_findings",
    "examples",
    "listing",
    "output_name_findings",
    "polygon_geometry",
    "read_headers",
    "report_unreadable",
    "rle_counts",
    "rle_geometry",
    "spread_indices",
    "unreadable_findings",
    "validate_request",
]
