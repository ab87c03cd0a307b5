"""Masks, outlines and COCO segmentations: round trips through pycocotools, the reference rasteriser."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils
from scipy import ndimage as ndi

from segpipe.models.coco import CocoAnnotation, Rle
from segpipe_trainer.geometry import (
    annotation_mask,
    mask_to_polygons,
    objects_from_instances,
    rasterize_instances,
)
from segpipe_trainer.postprocess import Instances
from tests.trainer.trainer_testkit import disc, iou


def round_trip(mask: np.ndarray) -> np.ndarray:
    return annotation_mask(mask_to_polygons(mask), height=mask.shape[0], width=mask.shape[1])


def shapes() -> dict[str, np.ndarray]:
    """Convex, concave and thin objects on a 40 x 50 image."""
    out = {}
    out["disc"] = disc((40, 50), center=(20, 25), radius=12)
    out["rectangle"] = np.zeros((40, 50), bool)
    out["rectangle"][5:30, 8:20] = True
    out["l_shape"] = np.zeros((40, 50), bool)
    out["l_shape"][5:35, 5:12] = True
    out["l_shape"][28:35, 5:40] = True
    out["crescent"] = disc((40, 50), center=(20, 25), radius=14) & ~disc((40, 50), center=(20, 33), radius=12)
    out["horizontal_line"] = np.zeros((40, 50), bool)
    out["horizontal_line"][10, 3:47] = True
    out["vertical_line"] = np.zeros((40, 50), bool)
    out["vertical_line"][2:38, 30] = True
    out["diagonal_line"] = np.eye(40, 50, dtype=bool)
    out["single_pixel"] = np.zeros((40, 50), bool)
    out["single_pixel"][0, 49] = True
    out["touching_border"] = disc((40, 50), center=(0, 0), radius=15)
    return out


@pytest.mark.parametrize("name", list(shapes()))
def test_outline_round_trips_through_pycocotools(name: str) -> None:
    # Given an object without holes
    mask = shapes()[name]

    # When its outline is rasterised again by pycocotools
    drawn = round_trip(mask)

    # Then the object comes back (exactly, in fact)
    assert iou(drawn, mask) >= 0.98
    assert np.array_equal(drawn, mask)


def test_touching_neighbours_keep_their_own_pixels() -> None:
    # Given two objects sharing a long edge, and a third touching them at a corner
    labels = np.zeros((30, 30), dtype=np.int32)
    labels[5:20, 5:15] = 1
    labels[5:20, 15:25] = 2
    labels[20:28, 25:29] = 3

    # When each object is outlined and rasterised again
    drawn = [round_trip(labels == n) for n in (1, 2, 3)]

    # Then each gets its own pixels back and none claims a neighbour's
    for n, mask in enumerate(drawn, start=1):
        assert iou(mask, labels == n) >= 0.98
    assert not (drawn[0] & drawn[1]).any()
    assert not (drawn[1] & drawn[2]).any()


def test_object_with_a_hole_keeps_its_outer_outline_only() -> None:
    # Given a ring (COCO polygons cannot keep its hole: pycocotools unions rings)
    ring = disc((40, 40), center=(20, 20), radius=15) & ~disc((40, 40), center=(20, 20), radius=6)

    # When it is outlined
    polygons = mask_to_polygons(ring)

    # Then one outer ring comes back, covering the hole too
    assert len(polygons) == 1
    assert np.array_equal(round_trip(ring), ndi.binary_fill_holes(ring))


def test_pieces_get_one_ring_each_and_vertices_lie_on_half_pixels() -> None:
    # Given an object in two pieces
    mask = disc((40, 60), center=(20, 15), radius=8) | disc((40, 60), center=(20, 45), radius=8)

    # When it is outlined
    polygons = mask_to_polygons(mask)

    # Then there is one ring per piece, vertices on the pixel grid's halves, inside the image
    assert len(polygons) == 2
    for ring in polygons:
        values = np.asarray(ring)
        assert len(values) % 2 == 0 and len(values) >= 6
        assert np.all(values * 2 == np.round(values * 2))
        assert values[0::2].min() >= 0 and values[0::2].max() <= 60
        assert values[1::2].min() >= 0 and values[1::2].max() <= 40


def test_empty_mask_has_no_polygons() -> None:
    assert mask_to_polygons(np.zeros((8, 8), dtype=bool)) == []


@settings(max_examples=150, deadline=None)
@given(mask=arrays(np.bool_, st.tuples(st.integers(1, 14), st.integers(1, 14))))
def test_any_mask_round_trips_exactly_once_holes_are_filled(mask: np.ndarray) -> None:
    # Given any mask, however jagged; its holes are what background 8-connectivity cannot reach
    filled = ndi.binary_fill_holes(mask, structure=np.ones((3, 3)))

    # When outlined and rasterised again
    drawn = round_trip(mask)

    # Then exactly the filled mask comes back
    assert np.array_equal(drawn, filled)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@settings(max_examples=100, deadline=None)
@given(
    points=st.lists(
        st.tuples(st.floats(-5, 45, allow_nan=False), st.floats(-5, 35, allow_nan=False)),
        min_size=3,
        max_size=8,
    )
)
# Found by hypothesis: moving 2.3 by a whole pixel before pycocotools scales it by 5 rounded a
# vertex to another integer than scaling the original did.
@example(points=[(2.0, 0.0), (2.5, 1.0), (2.3, 0.0)])
@example(points=[(12.3, 7.3), (14.9, 9.1), (13.7, 12.3)])
def test_polygon_raster_matches_pycocotools_on_the_whole_image(points: list[tuple[float, float]]) -> None:
    # Given any polygon, partly outside a 40 x 30 image perhaps
    ring = [float(value) for point in points for value in point]

    # When annotation_mask rasterises it (inside its bounding box only)
    drawn = annotation_mask([ring], height=30, width=40)

    # Then it agrees with pycocotools rasterising the whole image
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([ring], 30, 40))).astype(bool)
    assert np.array_equal(drawn, expected)


def test_rle_in_every_form_gives_the_mask_back() -> None:
    # Given a mask and its RLE, compressed and uncompressed
    mask = disc((20, 30), center=(10, 12), radius=6)
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    text = encoded["counts"].decode("ascii")
    runs = [len(list(group)) for group in _runs(mask.ravel(order="F"))]

    # When each form is rasterised
    forms: list[Rle | dict[str, Any]] = [
        Rle(size=(20, 30), counts=text),
        {"size": [20, 30], "counts": text},
        {"size": [20, 30], "counts": runs},
    ]

    # Then each gives the mask
    for form in forms:
        assert np.array_equal(annotation_mask(form, height=20, width=30), mask)


def _runs(values: np.ndarray) -> list[list[bool]]:
    """Runs of equal values, starting with a (possibly empty) run of False, as COCO counts them."""
    runs: list[list[bool]] = [[]]
    current = False
    for value in values.tolist():
        if value != current:
            runs.append([])
            current = value
        runs[-1].append(value)
    return runs


def test_rle_of_another_size_is_refused() -> None:
    rle = Rle(size=(10, 10), counts=[100])
    with pytest.raises(ValueError, match="size"):
        annotation_mask(rle, height=20, width=10)


def test_rasterize_instances_keeps_known_classes_and_lets_the_later_object_win() -> None:
    # Given three annotations: two overlapping of known classes, one of a class left out
    def square(annotation_id: int, category_id: int, x: int, y: int, size: int) -> CocoAnnotation:
        ring = [x, y, x + size, y, x + size, y + size, x, y + size]
        return CocoAnnotation(id=annotation_id, image_id=1, category_id=category_id, segmentation=[ring])

    annotations = [square(1, 7, 2, 2, 6), square(2, 9, 20, 20, 4), square(3, 8, 5, 5, 6)]

    # When rasterised with classes 7 -> 1 and 8 -> 2
    labels, classes = rasterize_instances(annotations, height=32, width=32, class_of={7: 1, 8: 2})

    # Then two objects are kept, in order, and the second covers the overlap
    assert labels.dtype == np.int32 and classes.dtype == np.int64
    assert classes.tolist() == [0, 1, 2]
    assert np.count_nonzero(labels == 2) == 36
    assert np.count_nonzero(labels == 1) == 36 - 9
    assert labels[6, 6] == 2
    assert not (labels[20:24, 20:24]).any()


def test_objects_from_instances_describe_each_object_above_the_floor() -> None:
    # Given two scored objects of different classes
    labels = np.zeros((40, 40), dtype=np.int32)
    labels[disc((40, 40), center=(10, 10), radius=6)] = 1
    labels[20:30, 22:35] = 2
    instances = Instances(
        labels=labels,
        classes=np.array([0, 2, 1], dtype=np.int64),
        scores=np.array([0, 0.9, 0.04], dtype=np.float32),
    )

    # When turned into predicted objects with a floor of 0.05, then of 0
    kept = objects_from_instances(instances, class_names=["nucleus", "mitosis"], score_floor=0.05)
    both = objects_from_instances(instances, class_names=["nucleus", "mitosis"], score_floor=0.0)

    # Then the low-scored one is left out above the floor, and each object is described
    assert [obj.category for obj in kept] == ["mitosis"]
    assert [obj.category for obj in both] == ["mitosis", "nucleus"]
    square = both[1]
    assert square.bbox == [22.0, 20.0, 13.0, 10.0]
    assert square.area == 130.0
    assert square.score == pytest.approx(0.04)
    for label, obj in zip((1, 2), both, strict=True):
        assert np.array_equal(annotation_mask(obj.segmentation, height=40, width=40), labels == label)
