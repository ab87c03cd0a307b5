"""Reading annotations.json in chunks gives exactly what reading it whole with pydantic gives.

The fast reading (`loading.fast_dataset`) parses the annotations array piece by piece and checks
field types itself; whenever it cannot vouch for a file, the careful reading decides. Each test
validates one file both ways and compares the reports and the manifests.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
from collections.abc import Callable
from typing import Any

import pytest

from segpipe.logic.split import render_manifests
from segpipe.logic.validate import MIN_ANNOTATIONS, RULES, Validation, entry, loading, thresholds
from segpipe.models.coco import Rle
from segpipe.models.report import ErrorCode
from tests.helpers.datasets import DatasetBuilder, box_rle, healthy_dataset, validate_dataset


@dataclasses.dataclass
class BothWays:
    fast: Validation
    careful: Validation
    fast_used: bool  # the fast reading went through without handing over to the careful one

    def assert_same(self) -> None:
        assert self.fast.report.model_dump() == self.careful.report.model_dump()
        assert (self.fast.plan is None) == (self.careful.plan is None)
        if self.fast.plan is not None and self.careful.plan is not None:
            assert manifests(self.fast) == manifests(self.careful)


def manifests(validation: Validation) -> dict[str, Any]:
    assert validation.plan is not None
    return {
        split: json.loads(body)
        for split, body in render_manifests(validation.plan, project="lab", version=1).items()
    }


def refuse(raw: bytes) -> loading.Dataset:
    raise loading.Refused("the test reads carefully")


def both_ways(
    builder: DatasetBuilder, monkeypatch: pytest.MonkeyPatch, *, body: bytes | None = None
) -> BothWays:
    """Validate `builder` (or `body` as its annotations.json) fast, then carefully."""
    store = builder.store()
    if body is not None:
        store.put("lab", "cells", "annotations.json", body)
    careful_calls: list[str] = []
    careful: Callable[[loading.AnnotationsFile], Any] = entry.careful_dataset

    def counted(file: loading.AnnotationsFile) -> Any:
        careful_calls.append(file.file_name)
        return careful(file)

    monkeypatch.setattr(entry, "careful_dataset", counted)
    fast = validate_dataset(builder, store=store)
    fast_used = not careful_calls
    monkeypatch.setattr(entry, "fast_dataset", refuse)
    return BothWays(fast=fast, careful=validate_dataset(builder, store=store), fast_used=fast_used)


def mixed_dataset() -> DatasetBuilder:
    """Two requested classes and one excluded, unfinished images, negatives, broken annotations,
    annotations without area and bbox, RLE masks, integer coordinates and extra fields."""
    builder = DatasetBuilder(classes=["nucleus", "mitosis", "debris"])
    builder.add_images(30, objects={"nucleus": 4, "mitosis": 1, "debris": 1})
    builder.add_images(6, group="slide-2", objects={"nucleus": 3, "mitosis": 1})
    builder.add_images(3, status="in_progress", objects={"nucleus": 2})
    builder.add_images(2)
    builder.add_broken("zero_area")
    builder.add_broken("outside_image", count=2)
    builder.add_broken("unknown_image")
    builder.add_annotation(1, "nucleus", box_rle(2, 3, 10, 12, image_width=128, image_height=128))
    builder.add_annotation(2, "nucleus", [[10, 10, 30, 10, 30, 30, 10, 30]], area=400, bbox=[10, 10, 20, 20])
    builder.add_annotation(3, "mitosis", [[40.5, 40.5, 60.0, 40.5, 50.0, 60.0]], attributes={"occluded": 0})
    two_rings = [[1.0, 1.0, 9.0, 1.0, 9.0, 9.0], [20.0, 20.0, 28.0, 20.0, 28.0, 28.0]]
    builder.add_annotation(4, "nucleus", two_rings)
    return builder


def test_a_mixed_dataset_in_many_chunks_reads_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given chunks of a few hundred bytes, so that the array is cut into dozens of pieces
    monkeypatch.setattr(loading, "CHUNK_BYTES", 300)

    result = both_ways(mixed_dataset(), monkeypatch)

    assert result.fast_used
    result.assert_same()
    assert result.fast.plan is not None and result.fast.report.ok


def test_annotations_before_the_images_and_pretty_printed_read_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the annotations first and the categories after them, indented as json.dumps(indent=2) writes
    monkeypatch.setattr(loading, "CHUNK_BYTES", 500)
    builder = mixed_dataset()
    document = builder.to_dict()
    reordered = {
        "annotations": document["annotations"],
        "images": document["images"],
        "categories": document["categories"],
    }

    result = both_ways(builder, monkeypatch, body=json.dumps(reordered, indent=2).encode())

    assert result.fast_used
    result.assert_same()


def test_an_annotations_key_deeper_in_the_document_is_not_taken_for_the_dataset_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an `info` that holds an "annotations" array of its own, before the real one
    builder = healthy_dataset()
    document = {"info": {"annotations": [{"id": 1, "note": "not a COCO annotation"}]}, **builder.to_dict()}

    result = both_ways(builder, monkeypatch, body=json.dumps(document).encode())

    assert result.fast_used
    result.assert_same()
    assert result.fast.report.details.total_annotations == len(builder.annotations)


def test_separators_inside_strings_and_nested_objects_still_read_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given extra fields whose text and nested lists look like the boundaries chunks are cut at
    monkeypatch.setattr(loading, "CHUNK_BYTES", 200)
    builder = healthy_dataset()
    for annotation in builder.annotations[::7]:
        annotation["note"] = 'a "quoted" },{ and }] inside a string'
        annotation["parts"] = [{"a": 1}, {"b": [2]}]

    result = both_ways(builder, monkeypatch)

    result.assert_same()
    assert result.fast.report.ok


def test_an_annotation_pydantic_refuses_gets_pydantic_s_message(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a coordinate that is text and an id that is not a number
    builder = healthy_dataset()
    document = json.loads(builder.to_bytes())
    document["annotations"][5]["segmentation"] = [["twelve", 3.0, 4.0, 5.0, 6.0, 7.0]]
    document["annotations"][9]["id"] = "nine"

    result = both_ways(builder, monkeypatch, body=json.dumps(document).encode())

    result.assert_same()
    assert [issue.code for issue in result.fast.report.errors] == [ErrorCode.DATASET_UNREADABLE.value]
    locations = [problem["location"] for problem in result.fast.report.errors[0].context["problems"]]
    assert {location.split(".")[1] for location in locations} == {"5", "9"}


def test_invalid_json_gets_the_careful_reading_s_message(monkeypatch: pytest.MonkeyPatch) -> None:
    builder = healthy_dataset()
    body = builder.to_bytes().replace(b'"segmentation": [[', b'"segmentation": [[1.0,, ', 1)

    result = both_ways(builder, monkeypatch, body=body)

    result.assert_same()
    assert not result.fast_used
    assert "invalid JSON" in result.fast.report.errors[0].message


def test_integer_values_are_written_as_floats_and_extra_fields_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given integer coordinates on one annotation, an integer area and box on another, and a field
    # COCO does not define
    builder = healthy_dataset()
    square = builder.add_annotation(1, "nucleus", [[10, 10, 30, 10, 30, 30, 10, 30]], score=0.5)
    boxed = builder.add_annotation(
        2, "nucleus", [[10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]], area=400, bbox=[10, 10, 20, 20]
    )

    result = both_ways(builder, monkeypatch)

    result.assert_same()
    written = {
        annotation["id"]: annotation
        for document in manifests(result.fast).values()
        for annotation in document["annotations"]
    }
    expected = {
        "category_id": 1,
        "segmentation": [[10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]],
        "bbox": [10.0, 10.0, 20.0, 20.0],
        "area": 400.0,
        "iscrowd": 0,
    }
    assert written[square] == {"id": square, "image_id": 1, **expected}
    assert written[boxed] == {"id": boxed, "image_id": 2, **expected}
    for annotation in (written[square], written[boxed]):
        values = [*annotation["segmentation"][0], *annotation["bbox"], annotation["area"]]
        assert all(type(value) is float for value in values)


def test_an_empty_annotations_array_reads_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    builder = DatasetBuilder(classes=["nucleus"])
    builder.add_images(3)

    result = both_ways(builder, monkeypatch)

    assert result.fast_used
    result.assert_same()
    assert ErrorCode.TOO_FEW_ANNOTATIONS.value in [issue.code for issue in result.fast.report.errors]


def test_the_thresholds_are_one_frozen_rules_object() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RULES.min_annotations = 5  # type: ignore[misc]
    assert MIN_ANNOTATIONS == RULES.min_annotations == 50
    assert RULES.header_sample == thresholds.HEADER_SAMPLE


def ring_annotation(annotation_id: int, ring: list[Any], **fields: Any) -> dict[str, Any]:
    return {"id": annotation_id, "image_id": 1, "category_id": 1, "segmentation": [ring], **fields}


def assert_texts_are_own(chunk: loading.Chunk, text: bytes) -> None:
    """Every kept text is a piece of the file's and parses to exactly its annotation's rings."""
    assert chunk.texts is not None
    for segmentation, found in zip(chunk.segmentations, chunk.texts, strict=True):
        if found is not None:
            assert found in text
            assert json.loads(found) == segmentation
            assert all(type(value) is float for ring in json.loads(found) for value in ring)


def test_segmentation_texts_are_the_file_s_own_and_parse_to_the_records_rings() -> None:
    rle = {"id": 2, "image_id": 1, "category_id": 1, "segmentation": {"size": [4, 4], "counts": [16]}}
    annotations = [
        ring_annotation(1, [1.5, 2.25, 3.0, 4.0, 5.0, 6.5]),
        rle,
        ring_annotation(3, [0.001, 2.0, 3.0, 4.0, 5.0, 6.0], note="keep"),
    ]
    text = json.dumps(annotations, indent=1).encode()

    chunk = loading.decode_chunk(text)

    assert chunk.texts is not None and chunk.texts[1] is None
    assert chunk.texts[0] is not None and chunk.texts[2] is not None
    assert chunk.segmentations[1] == Rle(size=(4, 4), counts=[16])
    assert_texts_are_own(chunk, text)


@pytest.mark.parametrize(
    ("ring", "kept"),
    [
        ([1, 2.0, 3.0, 4.0, 5.0, 6.0], False),  # an integer, which the manifests must write as 1.0
        ([1e-3, 2.0, 3.0, 4.0, 5.0, 6.0], False),  # json.dumps writes 0.001, but 1e-05 has no point
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], True),
    ],
    ids=["integer", "exponent-free", "floats"],
)
def test_a_segmentation_text_is_kept_only_when_every_number_is_written_as_a_float(
    ring: list[Any], kept: bool
) -> None:
    annotations = [ring_annotation(1, ring), ring_annotation(2, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]
    text = json.dumps(annotations).replace("0.001", "1E-3").encode()

    chunk = loading.decode_chunk(text)

    assert chunk.texts is not None
    assert (chunk.texts[0] is not None) == kept and chunk.texts[1] is not None
    assert chunk.segmentations[0] == [[float(value) for value in ring]]
    assert_texts_are_own(chunk, text)


def test_segmentation_texts_pair_with_their_own_annotation_whatever_the_extra_fields_hold() -> None:
    # Given a nested numeric `segmentation` in an extra field, and a key spelt with a \u escape
    annotations = [
        ring_annotation(1, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], extra={"segmentation": [[9.0, 9.0]]}),
        ring_annotation(2, [7.0, 2.0, 3.0, 4.0, 5.0, 6.0], other=[[8.0, 8.0]]),
    ]
    text = json.dumps(annotations).encode().replace(b'"segmentation": [[7.0', b'"segm\\u0065ntation": [[7.0')

    chunk = loading.decode_chunk(text)

    assert chunk.segmentations == [[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], [[7.0, 2.0, 3.0, 4.0, 5.0, 6.0]]]
    assert chunk.texts is not None and None not in chunk.texts
    assert_texts_are_own(chunk, text)


@pytest.mark.parametrize(
    "change",
    [
        {"id": 1.0},  # pydantic converts it; the careful way decides
        {"iscrowd": True},
        {"bbox": ["1", 2.0, 3.0, 4.0]},
        {"segmentation": [["twelve", 2.0, 3.0, 4.0, 5.0, 6.0]]},
    ],
    ids=["float-id", "bool-iscrowd", "text-bbox", "text-coordinate"],
)
def test_a_value_of_another_type_is_left_to_the_careful_way(change: dict[str, Any]) -> None:
    annotations = [{**ring_annotation(1, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), **change}]

    with pytest.raises(loading.Refused):
        loading.decode_chunk(json.dumps(annotations).encode())


def test_the_records_a_validation_leaves_are_frozen_for_the_collector() -> None:
    # When a validation ends, its plan's records are not in the collector's youngest generation
    # (which it would walk at its next pass) but frozen, and still freed by reference counting
    validation = validate_dataset(healthy_dataset())
    assert validation.plan is not None
    record = validation.plan.train.annotations[0]

    assert gc.get_freeze_count() > 0
    assert not any(candidate is record for candidate in gc.get_objects(generation=0))
    assert sys.getrefcount(record) == 3  # the side's list, `record`, and getrefcount's argument
