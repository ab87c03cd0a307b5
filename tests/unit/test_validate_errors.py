"""Every error code: a dataset or request that triggers it, and a report that blocks with the fix."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from segpipe.logic.split import split_draw
from segpipe.logic.validate import MAX_BROKEN_SHARE, MIN_ANNOTATIONS, Validation
from segpipe.models.common import VersionStatus
from segpipe.models.report import ErrorCode, Issue, TrainingDetails
from segpipe.models.version import ModelVersion
from tests.helpers.datasets import DatasetBuilder, MemoryDatasetStore, healthy_dataset, validate_dataset
from tests.helpers.versions import model_version


def the_error(validation: Validation, code: ErrorCode) -> Issue:
    """The one error of `code`; the report blocks and no split is planned."""
    found = [issue for issue in validation.report.errors if issue.code == code.value]
    assert len(found) == 1, [issue.code for issue in validation.report.errors]
    assert not validation.report.ok
    assert validation.plan is None
    assert found[0].message.endswith(".")
    return found[0]


def error_codes(validation: Validation) -> list[str]:
    return [issue.code for issue in validation.report.errors]


def nuclei(count: int, *, per_image: int = 5) -> DatasetBuilder:
    """`count` nuclei spread over completed images, `per_image` at a time."""
    builder = DatasetBuilder(classes=["nucleus"])
    full, rest = divmod(count, per_image)
    builder.add_images(full, objects={"nucleus": per_image})
    if rest:
        builder.add_images(1, objects={"nucleus": rest})
    return builder


def with_document(builder: DatasetBuilder, document: dict[str, Any] | bytes) -> MemoryDatasetStore:
    """The builder's files, with annotations.json replaced."""
    store = builder.store()
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    store.put("lab", "cells", "annotations.json", body)
    return store


def version(**fields: Any) -> ModelVersion:
    values: dict[str, Any] = {
        "label": "earlier",
        "request": healthy_dataset().request(),
        "details": TrainingDetails(preset="dinov2-small"),
        **fields,
    }
    return model_version(7, **values)


# --- Annotation counts -------------------------------------------------------------------------


def test_exactly_fifty_annotations_are_too_few() -> None:
    # Given exactly 50 valid nuclei on completed images
    validation = validate_dataset(nuclei(MIN_ANNOTATIONS), nuclei(1).request(test_set={"strategy": "none"}))

    # Then the product rule (more than 50) refuses it, with the numbers
    issue = the_error(validation, ErrorCode.TOO_FEW_ANNOTATIONS)
    assert issue.context["included_annotations"] == 50
    assert issue.context["required_more_than"] == 50
    assert "more than 50" in issue.message


def test_fifty_one_annotations_are_enough() -> None:
    validation = validate_dataset(nuclei(51), nuclei(1).request(test_set={"strategy": "none"}))

    assert ErrorCode.TOO_FEW_ANNOTATIONS.value not in error_codes(validation)
    assert validation.report.ok
    assert validation.plan is not None


def test_broken_and_ignored_annotations_do_not_count() -> None:
    # Given 51 annotations of which one is broken, plus others on an unfinished image
    builder = nuclei(50)
    builder.add_broken("zero_area")
    builder.add_images(1, status="in_progress", objects={"nucleus": 10})

    validation = validate_dataset(builder, builder.request(test_set={"strategy": "none"}))

    issue = the_error(validation, ErrorCode.TOO_FEW_ANNOTATIONS)
    assert issue.context["included_annotations"] == 50
    assert issue.context["broken_annotations"] == 1
    assert issue.context["annotations_on_unfinished_images"] == 10


# --- Classes -----------------------------------------------------------------------------------


def test_a_request_without_classes_is_refused() -> None:
    builder = healthy_dataset()

    validation = validate_dataset(builder, builder.request(classes=[]))

    issue = the_error(validation, ErrorCode.NO_CLASSES_SELECTED)
    assert issue.context == {"classes": [], "available": ["mitosis", "nucleus"]}
    assert ErrorCode.TOO_FEW_ANNOTATIONS.value not in error_codes(validation)


def test_no_classes_are_reported_even_without_a_dataset() -> None:
    builder = healthy_dataset()

    validation = validate_dataset(builder, builder.request(classes=[], dataset="gone"))

    assert error_codes(validation) == ["dataset_not_found", "no_classes_selected"]


def test_an_unknown_class_is_named_with_suggestions() -> None:
    builder = healthy_dataset()

    validation = validate_dataset(builder, builder.request(classes=["nucleus", "mitoses"]))

    issue = the_error(validation, ErrorCode.UNKNOWN_CLASS)
    assert issue.context["unknown"] == ["mitoses"]
    assert issue.context["suggestions"] == {"mitoses": ["mitosis"]}
    assert "mitosis" in issue.context["available"]


def test_a_class_without_annotations_on_completed_images_is_refused() -> None:
    # Given debris annotated only on an unfinished image
    builder = DatasetBuilder(classes=["nucleus", "debris"])
    builder.add_images(20, objects={"nucleus": 5})
    builder.add_images(1, status="in_progress", objects={"debris": 3})

    validation = validate_dataset(builder)

    issue = the_error(validation, ErrorCode.CLASS_WITHOUT_ANNOTATIONS)
    assert issue.context["class_name"] == "debris"


def test_a_class_whose_annotations_all_went_to_test_is_refused() -> None:
    # Given mitoses on two images only, and exactly those two images listed as the test set
    builder = DatasetBuilder(classes=["nucleus", "mitosis"])
    builder.add_images(20, objects={"nucleus": 5})
    with_mitosis = builder.add_images(2, objects={"nucleus": 5, "mitosis": 20})
    names = [builder.image(image_id).file_name for image_id in with_mitosis]

    validation = validate_dataset(builder, builder.request(test_set={"strategy": "images", "images": names}))

    issue = the_error(validation, ErrorCode.CLASS_MISSING_FROM_TRAINING_SET)
    assert issue.context == {"class_name": "mitosis", "test": 40}


# --- Images and status -------------------------------------------------------------------------


def test_no_completed_image_is_refused() -> None:
    builder = DatasetBuilder()
    builder.add_images(12, status="in_progress", objects={"nucleus": 5})

    validation = validate_dataset(builder)

    issue = the_error(validation, ErrorCode.NO_COMPLETED_IMAGES)
    assert issue.context["statuses"] == {"in_progress": 12}


def test_a_dataset_without_images_is_refused() -> None:
    validation = validate_dataset(DatasetBuilder())

    issue = the_error(validation, ErrorCode.NO_COMPLETED_IMAGES)
    assert issue.context["images"] == 0


def test_missing_image_files_are_listed() -> None:
    builder = healthy_dataset()
    gone = [builder.images[index].file_name for index in (3, 9, 27)]

    validation = validate_dataset(builder, store=builder.store(without=gone))

    issue = the_error(validation, ErrorCode.MISSING_IMAGE_FILE)
    assert issue.context["missing"] == 3
    assert issue.context["examples"] == gone
    assert gone[0] in issue.message


def test_missing_files_of_unfinished_images_do_not_matter() -> None:
    builder = healthy_dataset()
    builder.add_images(2, status="in_progress", objects={"nucleus": 1})
    unfinished = [record.file_name for record in builder.images if record.status == "in_progress"]

    validation = validate_dataset(builder, store=builder.store(without=unfinished))

    assert validation.report.ok


def test_unsupported_file_extensions_are_refused() -> None:
    builder = healthy_dataset()
    builder.images[0].file_name = "scan_0001.bmp"

    validation = validate_dataset(builder)

    issue = the_error(validation, ErrorCode.UNSUPPORTED_IMAGE_FORMAT)
    assert issue.context["examples"] == ["scan_0001.bmp"]


def test_a_file_of_another_format_than_its_name_says_is_refused() -> None:
    # Given every image file is really a GIF under a .png name (so the header sample sees one)
    builder = healthy_dataset()
    store = builder.store()
    gif = io.BytesIO()
    Image.new("L", (128, 128)).save(gif, format="GIF")
    for record in builder.images:
        store.put("lab", "cells", record.file_name, gif.getvalue())

    validation = validate_dataset(builder, store=store)

    issue = the_error(validation, ErrorCode.UNSUPPORTED_IMAGE_FORMAT)
    assert {example["format"] for example in issue.context["examples"]} == {"gif"}


def test_an_image_file_that_is_not_an_image_is_refused() -> None:
    builder = healthy_dataset()
    store = builder.store()
    for record in builder.images:
        store.put("lab", "cells", record.file_name, b"<html>Access denied</html>")

    validation = validate_dataset(builder, store=store)

    issue = the_error(validation, ErrorCode.UNREADABLE_IMAGE)
    assert issue.context["sampled"] == 16


def test_an_image_of_another_size_than_annotations_json_says_is_refused() -> None:
    # Given one image file that is twice the size the dataset gives it, in every sampled position
    builder = healthy_dataset()
    store = builder.store()
    record = builder.images[0]  # first by name, so always in the sample
    big = DatasetBuilder(width=256, height=256)
    big.add_images(1)
    store.put("lab", "cells", record.file_name, big.image_bytes(1))

    validation = validate_dataset(builder, store=store)

    issue = the_error(validation, ErrorCode.IMAGE_SIZE_MISMATCH)
    assert issue.context["mismatched"] == [
        {"file": record.file_name, "coco": [128, 128], "file_size": [256, 256]}
    ]


# --- Split -------------------------------------------------------------------------------------


def test_a_test_list_of_every_image_leaves_nothing_to_train() -> None:
    builder = healthy_dataset()
    everything = [record.file_name for record in builder.images]

    validation = validate_dataset(
        builder, builder.request(test_set={"strategy": "images", "images": everything})
    )

    issue = the_error(validation, ErrorCode.EMPTY_TRAINING_SET)
    assert issue.context["test_images"] == 40


def test_a_fraction_that_draws_the_only_group_leaves_nothing_to_train() -> None:
    # Given one slide, and a seed whose draw for it is below the fraction
    builder = DatasetBuilder()
    builder.add_images(12, group="slide-1", objects={"nucleus": 5})
    seed = next(seed for seed in range(100) if split_draw(key="group:slide-1", seed=seed) < 0.5)

    validation = validate_dataset(
        builder, builder.request(test_set={"strategy": "fraction", "fraction": 0.5, "seed": seed})
    )

    the_error(validation, ErrorCode.EMPTY_TRAINING_SET)


def test_unknown_test_images_are_named() -> None:
    builder = healthy_dataset()
    listed = [builder.images[0].file_name, "img_0001.png", "other.tif"]

    validation = validate_dataset(builder, builder.request(test_set={"strategy": "images", "images": listed}))

    issue = the_error(validation, ErrorCode.UNKNOWN_TEST_IMAGE)
    assert issue.context["unknown"] == ["img_0001.png", "other.tif"]
    assert issue.context["suggestions"]["img_0001.png"][0].startswith("img_0")


# --- The dataset file --------------------------------------------------------------------------


def test_a_dataset_that_does_not_exist_is_reported() -> None:
    builder = healthy_dataset()

    validation = validate_dataset(builder, builder.request(dataset="other-cells"))

    issue = the_error(validation, ErrorCode.DATASET_NOT_FOUND)
    assert issue.context["dataset"] == "other-cells"
    assert validation.report.details.dataset == "other-cells"


def test_a_dataset_key_of_another_project_is_refused() -> None:
    builder = healthy_dataset()

    validation = validate_dataset(
        builder, builder.request(dataset="projects/elsewhere/datasets/cells/annotations.json")
    )

    issue = the_error(validation, ErrorCode.DATASET_NOT_FOUND)
    assert issue.context["project"] == "lab"


def document_of(builder: DatasetBuilder) -> dict[str, Any]:
    return json.loads(builder.to_bytes())


def truncated(builder: DatasetBuilder) -> bytes:
    return builder.to_bytes()[:-200]


def changed(change: Callable[[dict[str, Any]], object]) -> Callable[[DatasetBuilder], dict[str, Any]]:
    """The builder's document as `change` leaves it."""

    def make(builder: DatasetBuilder) -> dict[str, Any]:
        document = document_of(builder)
        change(document)
        return document

    return make


@pytest.mark.parametrize(
    ("make", "location"),
    [
        (lambda builder: b'{"images": [', "(document)"),
        (truncated, "(document)"),
        (lambda builder: b"\xff\xfe not utf-8", "(document)"),
        (lambda builder: b"[]", "(document)"),
        (lambda builder: b"", "(document)"),
        (changed(lambda document: document["images"][3].update(width="wide")), "images.3.width"),
        (changed(lambda document: document.pop("categories")), "categories"),
        (
            changed(lambda document: document["images"][0].update(file_name="../../secrets.png")),
            "images.0.file_name",
        ),
        (
            changed(lambda document: document["annotations"][5].update(segmentation="a circle")),
            "annotations.5.segmentation",
        ),
    ],
    ids=[
        "malformed",
        "truncated",
        "not-utf8",
        "not-an-object",
        "empty",
        "wrong-type",
        "missing-key",
        "path",
        "segmentation",
    ],
)
def test_unreadable_datasets_are_explained_not_raised(make: Any, location: str) -> None:
    builder = healthy_dataset(images=6)

    validation = validate_dataset(builder, store=with_document(builder, make(builder)))

    issue = the_error(validation, ErrorCode.DATASET_UNREADABLE)
    assert issue.context["problems"][0]["location"].startswith(location)
    assert issue.context["problem_count"] >= 1
    assert validation.report.errors == [issue]


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("image_ids", lambda document: document["images"][1].update(id=document["images"][0]["id"])),
        (
            "image_file_names",
            lambda document: document["images"][1].update(file_name=document["images"][0]["file_name"]),
        ),
        ("category_ids", lambda document: document["categories"][1].update(id=1)),
        ("category_names", lambda document: document["categories"][1].update(name="nucleus")),
        (
            "annotation_ids",
            lambda document: document["annotations"][1].update(id=document["annotations"][0]["id"]),
        ),
    ],
)
def test_duplicate_ids_are_refused(field: str, change: Any) -> None:
    builder = healthy_dataset()

    validation = validate_dataset(builder, store=with_document(builder, changed(change)(builder)))

    issue = the_error(validation, ErrorCode.DUPLICATE_IDS)
    assert issue.context["counts"] == {field: 1}


def test_a_duplicate_name_of_a_class_not_requested_is_harmless() -> None:
    builder = DatasetBuilder(classes=["nucleus", "debris", "debris"])
    builder.add_images(30, objects={"nucleus": 3})

    validation = validate_dataset(builder, builder.request(classes=["nucleus"]))

    assert validation.report.ok


# --- Broken annotations ------------------------------------------------------------------------


def broken_share(valid: int, broken: int) -> Validation:
    builder = nuclei(valid)
    kinds = ["too_few_points", "outside_image", "zero_area", "unknown_image", "unknown_category"]
    for index in range(broken):
        builder.add_broken(kinds[index % len(kinds)])  # type: ignore[arg-type]
    return validate_dataset(builder, builder.request(test_set={"strategy": "none"}))


def test_more_than_a_fifth_broken_is_refused() -> None:
    # Given 80 valid and 21 broken annotations of every kind: 20.8% broken
    validation = broken_share(80, 21)

    issue = the_error(validation, ErrorCode.INVALID_ANNOTATIONS)
    assert issue.context["broken"] == 21
    assert issue.context["candidates"] == 101
    assert issue.context["max_share"] == MAX_BROKEN_SHARE
    assert set(issue.context["reasons"]) == {
        "too_few_points",
        "outside_image",
        "zero_area",
        "unknown_image",
        "unknown_category",
    }
    assert len(issue.context["examples"]) == 10


def test_exactly_a_fifth_broken_is_dropped_with_a_warning() -> None:
    validation = broken_share(80, 20)

    assert validation.report.ok
    assert [issue.code for issue in validation.report.warnings].count("invalid_annotations_dropped") == 1


# --- Base --------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["vit-huge", 0, "v0"])
def test_a_base_that_is_neither_preset_nor_version_is_refused(base: str | int) -> None:
    builder = healthy_dataset()

    validation = validate_dataset(builder, builder.request(base=base))

    issue = the_error(validation, ErrorCode.UNKNOWN_BASE)
    assert "sam-vit-base" in issue.context["presets"]


def test_a_base_version_that_does_not_exist_is_refused() -> None:
    builder = healthy_dataset()

    validation = validate_dataset(builder, builder.request(base="v7"), base_lookup=lambda number: None)

    issue = the_error(validation, ErrorCode.UNKNOWN_BASE)
    assert issue.context["version"] == 7


def test_a_base_version_cannot_be_checked_offline() -> None:
    builder = healthy_dataset()

    validation = validate_dataset(builder, builder.request(base=7))

    assert validation.report.ok


@pytest.mark.parametrize(
    "fields",
    [{"status": VersionStatus.FAILED}, {"status": VersionStatus.TRAINING}, {"model_type": "semantic"}],
    ids=["failed", "still-training", "other-model-type"],
)
def test_a_base_version_that_cannot_be_continued_is_refused(fields: dict[str, Any]) -> None:
    builder = healthy_dataset()

    validation = validate_dataset(
        builder, builder.request(base=7), base_lookup=lambda number: version(**fields)
    )

    issue = the_error(validation, ErrorCode.BASE_NOT_USABLE)
    assert issue.context["version"] == 7


def test_every_code_the_validator_raises_has_a_test_here_or_beside() -> None:
    # Each error and warning code that the validate package can emit is named by at least one test module
    package = Path(__file__).parents[2] / "functions/segpipe/logic/validate"
    source = "".join(path.read_text() for path in sorted(package.glob("*.py")))
    tests = "".join(path.read_text() for path in Path(__file__).parent.glob("test_validate_*.py"))
    emitted = set(re.findall(r"(?:ErrorCode|WarningCode)\.([A-Z_]+)", source))
    tested = set(re.findall(r"(?:ErrorCode|WarningCode)\.([A-Z_]+)", tests))
    assert len(emitted) == 43
    assert emitted <= tested
