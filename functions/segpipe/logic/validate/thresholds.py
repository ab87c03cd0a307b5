"""Every threshold of the training validation, in one frozen object.

`RULES` holds the values a deployment uses; the module constants below name the same values for
the importers and tests that read them one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rules:
    """The numbers behind the validation rules (the rule table is in docs/ARCHITECTURE.md)."""

    min_annotations: int = 50
    """A training needs MORE than this many valid included annotations (a product rule)."""
    max_broken_share: float = 0.2
    """More than this share of broken candidate annotations refuses the dataset; fewer are dropped."""
    edge_tolerance_px: float = 1.0
    """A vertex may lie this far outside the image (pixel-edge conventions differ between tools)."""
    few_annotations_per_class: int = 30
    """Classes with fewer valid annotations than this get `few_annotations_for_class`."""
    class_imbalance_ratio: float = 10.0
    """`class_imbalance` when the most frequent class has this many times the annotations of the rarest."""
    min_test_images: int = 5
    """`small_test_set` below this many test images (or below `min_test_annotations`)."""
    min_test_annotations: int = 30
    tiny_object_share: float = 0.1
    """`tiny_objects` when more than this share of a class is narrower than half a ViT patch."""
    negative_image_share: float = 0.5
    """`images_without_annotations` when more than this share of included images has no object."""
    header_sample: int = 16
    """Image headers read per request."""
    examples: int = 10
    """How many names or ids an issue lists at most."""
    median_sample: int = 100_001
    """Class medians are computed over at most this many areas (evenly spread) to keep sorting cheap."""


RULES = Rules()

MIN_ANNOTATIONS = RULES.min_annotations
MAX_BROKEN_SHARE = RULES.max_broken_share
EDGE_TOLERANCE_PX = RULES.edge_tolerance_px
FEW_ANNOTATIONS_PER_CLASS = RULES.few_annotations_per_class
CLASS_IMBALANCE_RATIO = RULES.class_imbalance_ratio
MIN_TEST_IMAGES = RULES.min_test_images
MIN_TEST_ANNOTATIONS = RULES.min_test_annotations
TINY_OBJECT_SHARE = RULES.tiny_object_share
NEGATIVE_IMAGE_SHARE = RULES.negative_image_share
HEADER_SAMPLE = RULES.header_sample
EXAMPLES = RULES.examples
MEDIAN_SAMPLE = RULES.median_sample
