"""Images whose output names would be equal (the trainer's `prediction_stem`) are refused."""

from __future__ import annotations

from segpipe.models.report import ErrorCode
from segpipe.models.trainer_io import MAX_STEM_LENGTH, STEM_PATTERN, prediction_stem
from tests.helpers.datasets import DatasetBuilder, ImageFormat, healthy_dataset, validate_dataset
from tests.unit.test_validate_errors import error_codes, the_error


def _named(builder: DatasetBuilder, names: dict[str, ImageFormat]) -> DatasetBuilder:
    for name, image_format in names.items():
        (image_id,) = builder.add_images(1, objects={"nucleus": 4}, image_format=image_format)
        builder.image(image_id).file_name = name
    return builder


def test_names_that_differ_only_in_extension_or_unsafe_characters_are_refused() -> None:
    builder = _named(
        healthy_dataset(),
        {"a.png": "png", "a.tif": "tiff", "x y.png": "png", "x_y.png": "png", "slide 1/t.png": "png"},
    )

    issue = the_error(validate_dataset(builder), ErrorCode.OUTPUT_NAMES_COLLIDE)

    assert issue.context == {
        "groups": 2,
        "examples": [
            {"stem": "a", "files": ["a.png", "a.tif"]},
            {"stem": "x_y", "files": ["x y.png", "x_y.png"]},
        ],
    }


def test_distinct_output_names_pass() -> None:
    builder = _named(
        healthy_dataset(), {"a.png": "png", "b.tif": "tiff", "sub/a.png": "png", "sub__b.png": "png"}
    )

    assert ErrorCode.OUTPUT_NAMES_COLLIDE.value not in error_codes(validate_dataset(builder))


def test_an_output_name_longer_than_the_api_serves_is_refused() -> None:
    long_name = "f" * 120 + "/" + "g" * 150 + ".png"
    builder = _named(healthy_dataset(), {long_name: "png"})

    issue = the_error(validate_dataset(builder), ErrorCode.OUTPUT_NAME_TOO_LONG)

    assert issue.context["examples"] == [long_name] and issue.context["max_length"] == MAX_STEM_LENGTH


def test_every_stem_the_trainer_writes_is_one_the_api_pattern_takes() -> None:
    import re

    for name in ["a.png", ".hidden.tif", "slide 1/tile.ome.tif", "ü/ß.png", "x" * 250 + ".png"]:
        assert re.fullmatch(STEM_PATTERN, prediction_stem(name)), name
