"""The details a person reads before spending GPU money, and the plan behind them."""

from __future__ import annotations

import statistics

from segpipe.logic.validate import HEADER_SAMPLE, TrainingDefaults
from segpipe.models.common import Preset
from segpipe.models.presets import PRESETS
from segpipe.models.report import TrainingDetails
from segpipe.models.version import ModelVersion
from tests.helpers.datasets import DatasetBuilder, healthy_dataset, validate_dataset
from tests.helpers.versions import model_version


def test_details_of_a_healthy_dataset() -> None:
    # Given 40 completed 128 px images with 4 nuclei and 1 mitosis each
    builder = healthy_dataset()

    validation = validate_dataset(builder)

    # Then the counts, sizes, header sample, settings and estimate are filled in
    details = validation.report.details
    assert validation.report.ok and validation.plan is not None
    assert (details.total_images, details.completed_images, details.included_images) == (40, 40, 40)
    assert details.train_images + details.test_images == 40
    assert (details.total_annotations, details.included_annotations) == (200, 200)
    assert details.train_annotations + details.test_annotations == 200
    assert details.average_annotations_per_image == 5.0
    assert [(item.name, item.annotations, item.images) for item in details.classes] == [
        ("nucleus", 160, 40),
        ("mitosis", 40, 40),
    ]
    assert details.images.model_dump() == {
        "min_width": 128,
        "max_width": 128,
        "min_height": 128,
        "max_height": 128,
        "distinct_sizes": 1,
        "megapixels": 0.655,
        "formats": {"png": 40},
        "channels": [1],
        "bit_depths": [8],
        "sampled": HEADER_SAMPLE,
    }
    assert (details.preset, details.epochs, details.tile_size) == ("tiny", 5, 128)
    assert details.estimate is not None
    assert details.estimate.instance_type == "ml.g5.xlarge" and details.estimate.spot
    assert details.estimate.cost_usd > 0


def test_per_class_counts_match_the_plan() -> None:
    builder = DatasetBuilder(classes=["nucleus", "mitosis"])
    builder.add_images(30, objects={"nucleus": 3})
    builder.add_images(20, objects={"nucleus": 1, "mitosis": 2})

    validation = validate_dataset(builder)

    plan = validation.plan
    assert plan is not None
    for item, category in zip(validation.report.details.classes, plan.categories, strict=True):
        assert item.train == sum(
            1 for annotation in plan.train.annotations if annotation["category_id"] == category.id
        )
        assert item.test == sum(
            1 for annotation in plan.test.annotations if annotation["category_id"] == category.id
        )
        assert item.train + item.test == item.annotations
    details = validation.report.details
    assert details.train_images == len(plan.train.images) and details.test_images == len(plan.test.images)


def test_median_area_agrees_with_statistics_median() -> None:
    builder = healthy_dataset()
    validation = validate_dataset(builder)
    plan = validation.plan
    assert plan is not None

    areas = [
        float(annotation.get("area") or 0.0)
        for annotation in plan.train.annotations + plan.test.annotations
        if annotation["category_id"] == 1
    ]

    assert validation.report.details.classes[0].median_area == round(statistics.median(areas), 2)


def test_overrides_in_the_request_win_over_defaults() -> None:
    builder = healthy_dataset(size=256)

    validation = validate_dataset(
        builder, builder.request(training={"epochs": 7, "tile_size": 256}, base="sam-vit-base")
    )

    details = validation.report.details
    assert (details.preset, details.epochs, details.tile_size) == ("sam-vit-base", 7, 256)


def test_a_base_version_brings_its_preset() -> None:
    builder = healthy_dataset()
    base = model_version(2, request=builder.request(), details=TrainingDetails(preset="dinov2-small"))
    asked: list[int] = []

    def lookup(number: int) -> ModelVersion:
        asked.append(number)
        return base

    validation = validate_dataset(builder, builder.request(base="v2"), base_lookup=lookup)

    assert asked == [2]
    assert validation.report.details.preset == "dinov2-small"
    assert validation.report.warnings == []


def test_without_any_status_every_image_is_completed() -> None:
    builder = DatasetBuilder(classes=["nucleus"])
    builder.add_images(20, status=None, objects={"nucleus": 4})

    details = validate_dataset(builder).report.details

    assert details.completed_images == 20
    assert details.included_annotations == 80


def test_only_completed_images_count_when_statuses_are_given() -> None:
    builder = healthy_dataset()
    builder.add_images(5, status="in_progress", objects={"nucleus": 9})

    details = validate_dataset(builder).report.details

    assert (details.total_images, details.completed_images) == (45, 40)
    assert details.ignored.unfinished_images == 5
    assert details.ignored.annotations_on_unfinished_images == 45
    assert details.included_annotations == 200


def test_completed_images_without_objects_are_kept_as_negatives() -> None:
    builder = healthy_dataset()
    negatives = builder.add_images(3)

    validation = validate_dataset(builder)

    plan = validation.plan
    assert plan is not None
    planned = {image.id for image in plan.train.images + plan.test.images}
    assert set(negatives) <= planned
    assert validation.report.details.images_without_annotations == 3


def test_headers_are_sampled_evenly_and_deterministically() -> None:
    # Given 100 images
    builder = DatasetBuilder(classes=["nucleus"])
    builder.add_images(100, objects={"nucleus": 1})
    store = builder.store()

    validate_dataset(builder, store=store)
    first = list(store.head_reads)
    store.head_reads.clear()
    validate_dataset(builder, store=store)

    # Then at most HEADER_SAMPLE heads are read, spread from the first name to the last, the same each time
    names = sorted(record.file_name for record in builder.images)
    assert len(first) == HEADER_SAMPLE
    assert first[0] == names[0] and first[-1] == names[-1]
    assert len(set(first)) == HEADER_SAMPLE
    assert store.head_reads == first


def test_tiff_and_16_bit_images_are_described() -> None:
    builder = DatasetBuilder(classes=["nucleus"], image_format="tiff", bit_depth=16, channels=2)
    builder.add_images(20, objects={"nucleus": 4})

    images = validate_dataset(builder).report.details.images

    assert images.formats == {"tiff": 20}
    assert (images.channels, images.bit_depths) == ([2], [16])


def test_every_preset_has_a_patch_size() -> None:
    assert set(PRESETS) == set(Preset)


def test_defaults_are_used_when_the_request_names_nothing() -> None:
    builder = healthy_dataset()
    defaults = TrainingDefaults(preset=Preset.DINOV2_SMALL, epochs=12, tile_size=128)

    details = validate_dataset(builder, defaults=defaults).report.details

    assert (details.preset, details.epochs, details.tile_size) == ("dinov2-small", 12, 128)
