"""Every warning code: a dataset or request that triggers it, and a report that still passes."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from segpipe.errors import ObjectNotFound
from segpipe.logic.split import split_draw
from segpipe.logic.validate import (
    CLASS_IMBALANCE_RATIO,
    FEW_ANNOTATIONS_PER_CLASS,
    TrainingDefaults,
    Validation,
)
from segpipe.models.common import Preset
from segpipe.models.presets import PRESETS
from segpipe.models.report import Issue, TrainingDetails, WarningCode
from tests.helpers.datasets import DatasetBuilder, MemoryDatasetStore, healthy_dataset, validate_dataset
from tests.helpers.versions import model_version


def the_warning(validation: Validation, code: WarningCode) -> Issue:
    """The one warning of `code`, on a report that passes."""
    assert validation.report.errors == []
    assert validation.report.ok
    assert validation.plan is not None
    found = [issue for issue in validation.report.warnings if issue.code == code.value]
    assert len(found) == 1, [issue.code for issue in validation.report.warnings]
    assert found[0].message.endswith(".")
    return found[0]


def names(builder: DatasetBuilder, ids: list[int]) -> list[str]:
    return [builder.image(image_id).file_name for image_id in ids]


def test_a_healthy_dataset_has_no_warnings() -> None:
    # The baseline every test below changes in one way
    validation = validate_dataset(healthy_dataset())

    assert validation.report.ok
    assert validation.report.warnings == []


# --- Test set ----------------------------------------------------------------------------------


def test_no_test_set_is_allowed_with_a_warning() -> None:
    builder = healthy_dataset()

    validation = validate_dataset(builder, builder.request(test_set={"strategy": "none"}))

    issue = the_warning(validation, WarningCode.NO_TEST_SET)
    assert issue.context == {"strategy": "none"}
    assert validation.report.details.test_images == 0


def test_a_fraction_that_draws_no_image_warns() -> None:
    # Given one slide, and a seed whose draw for it is above the fraction
    builder = DatasetBuilder(classes=["nucleus"])
    builder.add_images(12, group="slide-1", objects={"nucleus": 5})
    seed = next(seed for seed in range(100) if split_draw(key="group:slide-1", seed=seed) > 0.3)

    validation = validate_dataset(
        builder, builder.request(test_set={"strategy": "fraction", "fraction": 0.3, "seed": seed})
    )

    issue = the_warning(validation, WarningCode.NO_TEST_SET)
    assert issue.context["strategy"] == "fraction"


def test_a_small_test_set_warns() -> None:
    builder = healthy_dataset()
    listed = [record.file_name for record in builder.images[:2]]

    validation = validate_dataset(builder, builder.request(test_set={"strategy": "images", "images": listed}))

    issue = the_warning(validation, WarningCode.SMALL_TEST_SET)
    assert (issue.context["test_images"], issue.context["test_annotations"]) == (2, 10)


def test_a_class_missing_from_the_test_set_warns() -> None:
    builder = DatasetBuilder(classes=["nucleus", "mitosis"])
    plain = builder.add_images(10, objects={"nucleus": 5})
    builder.add_images(30, objects={"nucleus": 3, "mitosis": 1})

    validation = validate_dataset(
        builder, builder.request(test_set={"strategy": "images", "images": names(builder, plain)})
    )

    issue = the_warning(validation, WarningCode.CLASS_MISSING_FROM_TEST_SET)
    assert issue.context == {"class_name": "mitosis", "train": 30}


def test_listed_test_images_that_are_not_completed_are_left_out() -> None:
    builder = healthy_dataset()
    unfinished = builder.add_images(2, status="in_progress", objects={"nucleus": 1})
    listed = [record.file_name for record in builder.images[:6]] + names(builder, unfinished)

    validation = validate_dataset(builder, builder.request(test_set={"strategy": "images", "images": listed}))

    issue = the_warning(validation, WarningCode.TEST_IMAGES_NOT_COMPLETED)
    assert issue.context["images"] == names(builder, unfinished)
    assert validation.report.details.test_images == 6


def test_group_members_of_listed_test_images_are_held_out() -> None:
    # Given a slide of 5 tiles, of which only 2 are listed as test images
    builder = healthy_dataset()
    slide = builder.add_images(5, group="slide-9", objects={"nucleus": 4, "mitosis": 1})
    listed = [record.file_name for record in builder.images[:6]] + names(builder, slide[:2])

    validation = validate_dataset(builder, builder.request(test_set={"strategy": "images", "images": listed}))

    # Then the other 3 tiles are on neither side
    issue = the_warning(validation, WarningCode.GROUP_MEMBERS_HELD_OUT)
    assert issue.context == {"images": 3, "groups": ["slide-9"]}
    details = validation.report.details
    assert (details.train_images, details.test_images, details.ignored.images_held_out) == (34, 8, 3)


# --- Classes and annotations -------------------------------------------------------------------


def test_few_annotations_of_a_class_warn() -> None:
    builder = healthy_dataset()
    builder.classes = [*builder.classes, "apoptosis"]
    builder.add_images(10, objects={"nucleus": 2, "apoptosis": 1})

    validation = validate_dataset(builder)

    issue = the_warning(validation, WarningCode.FEW_ANNOTATIONS_FOR_CLASS)
    assert issue.context == {
        "class_name": "apoptosis",
        "annotations": 10,
        "recommended_at_least": FEW_ANNOTATIONS_PER_CLASS,
    }


def test_class_imbalance_warns() -> None:
    builder = DatasetBuilder(classes=["nucleus", "mitosis"])
    builder.add_images(40, objects={"nucleus": 11, "mitosis": 1})

    validation = validate_dataset(builder)

    issue = the_warning(validation, WarningCode.CLASS_IMBALANCE)
    assert issue.context["ratio"] == 11.0 > CLASS_IMBALANCE_RATIO
    assert (issue.context["commonest"], issue.context["rarest"]) == ("nucleus", "mitosis")


def test_a_few_broken_annotations_are_dropped_with_a_warning() -> None:
    builder = healthy_dataset()
    dropped = builder.add_broken("outside_image", count=2) + builder.add_broken("too_few_points")

    validation = validate_dataset(builder)

    issue = the_warning(validation, WarningCode.INVALID_ANNOTATIONS_DROPPED)
    assert issue.context["reasons"] == {"outside_image": 2, "too_few_points": 1}
    assert issue.context["examples"] == dropped
    assert validation.report.details.ignored.invalid_annotations == 3
    assert validation.plan is not None
    kept = {
        annotation["id"]
        for annotation in validation.plan.train.annotations + validation.plan.test.annotations
    }
    assert not kept & set(dropped)


def test_ignored_annotations_are_counted() -> None:
    builder = DatasetBuilder(classes=["nucleus", "mitosis", "debris"])
    builder.add_images(40, objects={"nucleus": 4, "mitosis": 1, "debris": 2})
    builder.add_images(3, status="in_progress", objects={"nucleus": 2})

    validation = validate_dataset(builder, builder.request(classes=["nucleus", "mitosis"]))

    issue = the_warning(validation, WarningCode.ANNOTATIONS_IGNORED)
    assert issue.context == {"excluded_classes": {"debris": 80}, "annotations_on_unfinished_images": 6}


def test_objects_smaller_than_a_patch_warn() -> None:
    # Given nuclei about 4 px across, and the DINOv2 preset (its patches resampled to 16 px: 8 px resolved)
    builder = healthy_dataset()
    builder.add_images(10, objects={"nucleus": 20}, radius=(1.5, 2.5))
    defaults = TrainingDefaults(preset=Preset.DINOV2_SMALL, epochs=5, tile_size=128)

    validation = validate_dataset(builder, defaults=defaults)

    issue = the_warning(validation, WarningCode.TINY_OBJECTS)
    assert issue.context["patch_size"] == PRESETS[Preset.DINOV2_SMALL].patch_size == 16
    assert list(issue.context["tiny_share"]) == ["nucleus"]
    assert 0.5 < issue.context["tiny_share"]["nucleus"] < 0.6  # 200 of 360


# --- Images ------------------------------------------------------------------------------------


def test_mixed_image_formats_warn() -> None:
    builder = healthy_dataset()
    builder.add_images(4, image_format="tiff", objects={"nucleus": 4, "mitosis": 1})
    builder.add_images(1, image_format="jpeg", objects={"nucleus": 4, "mitosis": 1})

    validation = validate_dataset(builder)

    issue = the_warning(validation, WarningCode.MIXED_IMAGE_FORMATS)
    assert issue.context == {"formats": {"png": 40, "tiff": 4, "jpeg": 1}}


def test_mixed_channel_counts_warn() -> None:
    # Given half the images in RGB (every other name, so the sample sees both)
    builder = DatasetBuilder(classes=["nucleus", "mitosis"])
    for _ in range(20):
        builder.add_images(1, objects={"nucleus": 4, "mitosis": 1})
        builder.add_images(1, channels=3, objects={"nucleus": 4, "mitosis": 1})

    validation = validate_dataset(builder)

    issue = the_warning(validation, WarningCode.MIXED_CHANNEL_COUNTS)
    assert issue.context == {"channels": [1, 3]}


def test_images_smaller_than_the_tile_warn() -> None:
    builder = healthy_dataset()
    builder.add_images(3, width=96, height=200, objects={"nucleus": 2})

    validation = validate_dataset(builder)

    issue = the_warning(validation, WarningCode.IMAGES_SMALLER_THAN_TILE)
    assert issue.context == {"images": 3, "tile_size": 128, "smallest": [96, 200]}


def test_images_without_status_in_a_dataset_with_status_are_unfinished() -> None:
    builder = healthy_dataset()
    builder.add_images(4, status=None, objects={"nucleus": 3})

    validation = validate_dataset(builder)

    issue = the_warning(validation, WarningCode.IMAGES_WITHOUT_STATUS)
    assert issue.context["images"] == 4
    assert validation.report.details.completed_images == 40
    assert validation.report.details.ignored.unfinished_images == 4


def test_many_images_without_annotations_warn() -> None:
    builder = healthy_dataset()
    builder.add_images(41)

    validation = validate_dataset(builder)

    issue = the_warning(validation, WarningCode.IMAGES_WITHOUT_ANNOTATIONS)
    assert issue.context == {"images": 41, "included_images": 81}
    assert validation.report.details.images_without_annotations == 41


def test_headers_past_the_first_bytes_warn() -> None:
    # Given JPEGs whose ICC profile pushes the frame header past the bytes read
    builder = healthy_dataset()
    store = builder.store()
    jpeg = io.BytesIO()
    Image.new("RGB", (128, 128)).save(jpeg, format="JPEG", icc_profile=b"\x00" * 100_000)
    for record in builder.images:
        record.file_name = record.file_name.replace(".png", ".jpg")
        store.put("lab", "cells", record.file_name, jpeg.getvalue())
    store.put("lab", "cells", "annotations.json", builder.to_bytes())

    validation = validate_dataset(builder, store=store)

    issue = the_warning(validation, WarningCode.IMAGE_HEADERS_NOT_READ)
    assert len(issue.context["examples"]) == 16
    assert validation.report.details.images.sampled == 0


def test_a_file_that_fails_to_read_only_costs_its_sample() -> None:
    # Given a store that loses one file between listing and reading
    builder = healthy_dataset()

    class Flaky(MemoryDatasetStore):
        def read_head(self, project: str, dataset: str, file_name: str, nbytes: int) -> bytes:
            if file_name == builder.images[0].file_name:
                raise ObjectNotFound("gone")
            return super().read_head(project, dataset, file_name, nbytes)

    validation = validate_dataset(builder, store=Flaky(builder.store().datasets))

    issue = the_warning(validation, WarningCode.IMAGE_HEADERS_NOT_READ)
    assert issue.context["examples"] == [builder.images[0].file_name]
    assert validation.report.details.images.sampled == 15


# --- Base, compute -----------------------------------------------------------------------------


def test_a_base_version_with_other_classes_warns() -> None:
    builder = healthy_dataset()
    base = model_version(
        3,
        label="nuclei only",
        classes=["nucleus", "debris"],
        request=builder.request(),
        details=TrainingDetails(preset="dinov2-small"),
    )

    validation = validate_dataset(builder, builder.request(base="v3"), base_lookup=lambda number: base)

    issue = the_warning(validation, WarningCode.BASE_CLASSES_DIFFER)
    assert (issue.context["added"], issue.context["removed"]) == (["mitosis"], ["debris"])
    assert validation.report.details.preset == "dinov2-small"


def test_an_unknown_instance_type_warns() -> None:
    builder = healthy_dataset()

    validation = validate_dataset(builder, builder.request(compute={"instance_type": "ml.g7.xlarge"}))

    issue = the_warning(validation, WarningCode.UNKNOWN_INSTANCE_TYPE)
    assert issue.context == {"instance_type": "ml.g7.xlarge"}
    estimate = validation.report.details.estimate
    assert estimate is not None and estimate.hourly_usd is None


def test_an_estimate_beyond_max_hours_warns() -> None:
    builder = healthy_dataset()
    request: dict[str, Any] = {"compute": {"max_hours": 0.1}, "training": {"epochs": 2000}}

    validation = validate_dataset(builder, builder.request(**request))

    issue = the_warning(validation, WarningCode.ESTIMATE_EXCEEDS_MAX_HOURS)
    assert issue.context["max_hours"] == 0.1
    assert issue.context["estimated_hours"] > 0.1
