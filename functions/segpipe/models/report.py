"""The validation report: what a person reads before spending GPU money."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from segpipe.models.common import ModelType, VersionNumber
from segpipe.models.contract import Contract


class ErrorCode(StrEnum):
    """Problems that block a submission. Values are stable: clients match on them."""

    INVALID_REQUEST = "invalid_request"
    DATASET_NOT_FOUND = "dataset_not_found"
    DATASET_UNREADABLE = "dataset_unreadable"
    NO_CLASSES_SELECTED = "no_classes_selected"
    UNKNOWN_CLASS = "unknown_class"
    NO_COMPLETED_IMAGES = "no_completed_images"
    CLASS_WITHOUT_ANNOTATIONS = "class_without_annotations"
    TOO_FEW_ANNOTATIONS = "too_few_annotations"
    EMPTY_TRAINING_SET = "empty_training_set"
    UNKNOWN_TEST_IMAGE = "unknown_test_image"
    MISSING_IMAGE_FILE = "missing_image_file"
    INVALID_ANNOTATIONS = "invalid_annotations"
    DUPLICATE_IDS = "duplicate_ids"
    UNKNOWN_BASE = "unknown_base"
    BASE_NOT_USABLE = "base_not_usable"
    UNSUPPORTED_IMAGE_FORMAT = "unsupported_image_format"
    UNREADABLE_IMAGE = "unreadable_image"
    IMAGE_SIZE_MISMATCH = "image_size_mismatch"
    CLASS_MISSING_FROM_TRAINING_SET = "class_missing_from_training_set"
    INSTANCE_TYPE_NOT_ALLOWED = "instance_type_not_allowed"
    COMPUTE_OVER_LIMIT = "compute_over_limit"
    TOO_MANY_RUNNING_JOBS = "too_many_running_jobs"
    DATASET_TOO_LARGE = "dataset_too_large"
    OUTPUT_NAMES_COLLIDE = "output_names_collide"
    OUTPUT_NAME_TOO_LONG = "output_name_too_long"
    # Analyses
    NO_ACTIVE_VERSION = "no_active_version"
    SEVERAL_ACTIVE_VERSIONS = "several_active_versions"
    UNKNOWN_VERSION = "unknown_version"
    VERSION_NOT_USABLE = "version_not_usable"
    VERSION_NOT_ACTIVE = "version_not_active"
    NO_IMAGES = "no_images"
    CHANNELS_DIFFER = "channels_differ"


class WarningCode(StrEnum):
    """Advice that never blocks a submission. Values are stable: clients match on them."""

    NO_TEST_SET = "no_test_set"
    SMALL_TEST_SET = "small_test_set"
    CLASS_MISSING_FROM_TEST_SET = "class_missing_from_test_set"
    FEW_ANNOTATIONS_FOR_CLASS = "few_annotations_for_class"
    CLASS_IMBALANCE = "class_imbalance"
    INVALID_ANNOTATIONS_DROPPED = "invalid_annotations_dropped"
    ANNOTATIONS_IGNORED = "annotations_ignored"
    TINY_OBJECTS = "tiny_objects"
    MIXED_IMAGE_FORMATS = "mixed_image_formats"
    TEST_IMAGES_NOT_COMPLETED = "test_images_not_completed"
    IMAGES_SMALLER_THAN_TILE = "images_smaller_than_tile"
    BASE_CLASSES_DIFFER = "base_classes_differ"
    IMAGES_WITHOUT_STATUS = "images_without_status"
    IMAGES_WITHOUT_ANNOTATIONS = "images_without_annotations"
    GROUP_MEMBERS_HELD_OUT = "group_members_held_out"
    MIXED_CHANNEL_COUNTS = "mixed_channel_counts"
    IMAGE_HEADERS_NOT_READ = "image_headers_not_read"
    UNKNOWN_INSTANCE_TYPE = "unknown_instance_type"
    ESTIMATE_EXCEEDS_MAX_HOURS = "estimate_exceeds_max_hours"
    # Analyses
    IMAGE_SIZES_FAR_FROM_TRAINING = "image_sizes_far_from_training"
    FILES_SKIPPED = "files_skipped"
    THRESHOLD_NOT_LOCKED = "threshold_not_locked"


class Issue(Contract):
    code: str = Field(description="Stable snake_case code (an ErrorCode or WarningCode value)")
    message: str = Field(description="What is wrong, in plain words, and how to fix it")
    context: dict[str, Any] = Field(default_factory=dict, description="Numbers and names behind the message")


class ClassCounts(Contract):
    name: str
    annotations: int = Field(description="Included annotations of this class")
    train: int = Field(description="Annotations of this class in the training set")
    test: int = Field(description="Annotations of this class in the test set")
    images: int = Field(description="Included images that hold at least one annotation of this class")
    median_area: float | None = Field(default=None, description="Median object area in pixels")


class IgnoredCounts(Contract):
    excluded_classes: dict[str, int] = Field(
        default_factory=dict, description="Annotations per class that the request leaves out"
    )
    unfinished_images: int = Field(default=0, description="Images whose status is not completed")
    annotations_on_unfinished_images: int = 0
    invalid_annotations: int = Field(default=0, description="Included annotations dropped as broken")
    images_held_out: int = Field(
        default=0, description="Completed images left out of both sets because their group holds a test image"
    )


class ImageStats(Contract):
    min_width: int = 0
    max_width: int = 0
    min_height: int = 0
    max_height: int = 0
    distinct_sizes: int = 0
    megapixels: float = Field(default=0.0, description="Total pixels of included images, in millions")
    formats: dict[str, int] = Field(default_factory=dict, description="Included images per file format")
    channels: list[int] = Field(
        default_factory=list, description="Channel counts seen in sampled image headers"
    )
    bit_depths: list[int] = Field(default_factory=list, description="Bits per sample seen in sampled headers")
    sampled: int = Field(default=0, description="Image headers read to fill channels and bit depths")


class Estimate(Contract):
    instance_type: str
    spot: bool
    hours: float = Field(description="Expected billable hours, start-up included")
    cost_usd: float = Field(description="Expected cost in US dollars (on-demand price, or spot estimate)")
    basis: str = Field(description="How the estimate was made")
    hourly_usd: float | None = Field(
        default=None,
        description="Price per hour used (spot discount applied); None when the price is unknown",
    )
    gpu: str | None = Field(default=None, description="GPU model assumed for the instance type")


class TrainingDetails(Contract):
    dataset: str = ""
    model_type: ModelType | None = None
    total_images: int = 0
    completed_images: int = 0
    included_images: int = Field(default=0, description="Completed images, with or without objects")
    train_images: int = 0
    test_images: int = 0
    total_annotations: int = 0
    included_annotations: int = 0
    train_annotations: int = 0
    test_annotations: int = 0
    images_without_annotations: int = Field(
        default=0, description="Included images without included annotations (kept as negatives)"
    )
    average_annotations_per_image: float = 0.0
    classes: list[ClassCounts] = Field(default_factory=list)
    ignored: IgnoredCounts = Field(default_factory=IgnoredCounts)
    images: ImageStats = Field(default_factory=ImageStats)
    tile_size: int | None = None
    epochs: int | None = None
    preset: str | None = None
    estimate: Estimate | None = None


class ValidationReport(Contract):
    ok: bool = Field(description="True when there are no errors")
    errors: list[Issue] = Field(default_factory=list)
    warnings: list[Issue] = Field(default_factory=list)
    details: TrainingDetails = Field(default_factory=TrainingDetails)
    version: VersionNumber | None = Field(default=None, description="The version created, once submitted")
    job_name: str | None = Field(default=None, description="The training job started, once submitted")

    @classmethod
    def from_issues(
        cls, errors: list[Issue], warnings: list[Issue], details: TrainingDetails | None = None
    ) -> ValidationReport:
        return cls(ok=not errors, errors=errors, warnings=warnings, details=details or TrainingDetails())
