"""Polygon and RLE geometry in pure Python, against pycocotools' masks as the oracle."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from segpipe.logic.validate import polygon_geometry, rle_counts, rle_geometry
from segpipe.models.coco import Rle
from tests.helpers.datasets import DatasetBuilder, box_rle, healthy_dataset, star_polygon, validate_dataset

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools and numpy 2


def column_runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO runs of a mask (column-major, background first)."""
    flat = mask.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return [int(changes[0]), *np.diff(changes).tolist()]


@settings(max_examples=40, deadline=None)
@given(
    centre=st.tuples(st.floats(30, 70), st.floats(30, 70)),
    radius=st.floats(5, 25),
    vertices=st.integers(16, 30),
    seed=st.integers(0, 10_000),
)
def test_polygon_area_and_bounds_match_the_rasterised_mask(
    centre: tuple[float, float], radius: float, vertices: int, seed: int
) -> None:
    # Given a star-shaped outline like an annotated nucleus
    ring = star_polygon(*centre, radius, vertices=vertices, rng=random.Random(seed))

    # When its geometry is computed
    geometry = polygon_geometry([ring])

    # Then the area is the rasterised area within a pixel band along the outline,
    # and the bounds lie within the 1.5 px that rasterising may move an edge
    assert geometry is not None
    area, x0, y0, x1, y1 = geometry
    rle = mask_utils.frPyObjects([ring], 100, 100)
    perimeter = sum(
        math.dist(ring[i : i + 2], ring[(i + 2) % len(ring) : (i + 2) % len(ring) + 2])
        for i in range(0, len(ring), 2)
    )
    assert abs(area - float(mask_utils.area(rle).sum())) <= perimeter
    box_x, box_y, box_width, box_height = mask_utils.toBbox(mask_utils.merge(rle))
    assert x0 == pytest.approx(box_x, abs=1.5) and y0 == pytest.approx(box_y, abs=1.5)
    assert x1 == pytest.approx(box_x + box_width, abs=1.5) and y1 == pytest.approx(
        box_y + box_height, abs=1.5
    )


@settings(max_examples=40, deadline=None)
@given(
    ring=st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=3, max_size=30),
    scale=st.floats(0.5, 4),
)
def test_shoelace_area_is_invariant_to_orientation_and_scales_quadratically(
    ring: list[tuple[float, float]], scale: float
) -> None:
    flat = [value for point in ring for value in point]
    backwards = [value for point in reversed(ring) for value in point]
    shifted = flat[2:] + flat[:2]
    scaled = [value * scale for value in flat]

    area = polygon_geometry([flat])
    assert area is not None
    for other in (backwards, shifted):
        assert polygon_geometry([other])[0] == pytest.approx(area[0], rel=1e-9, abs=1e-6)  # type: ignore[index]
    assert polygon_geometry([scaled])[0] == pytest.approx(area[0] * scale**2, rel=1e-9, abs=1e-6)  # type: ignore[index]


def test_rings_add_up_and_bounds_cover_all_rings() -> None:
    square = [0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]
    triangle = [20.0, 20.0, 30.0, 20.0, 20.0, 30.0]

    assert polygon_geometry([square, triangle]) == (150.0, 0.0, 0.0, 30.0, 30.0)


@pytest.mark.parametrize(
    "rings",
    [[], [[1.0, 2.0, 3.0, 4.0]], [[1.0, 2.0, 3.0, 4.0, 5.0]], [[0.0, 0.0, 4.0, 0.0, 4.0, 4.0], [1.0, 1.0]]],
    ids=["no-ring", "two-points", "odd-coordinates", "one-bad-ring"],
)
def test_rings_with_fewer_than_three_points_are_broken(rings: list[list[float]]) -> None:
    assert polygon_geometry(rings) is None


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    density=st.floats(0.05, 0.95),
)
def test_compressed_rle_decodes_like_pycocotools(seed: int, height: int, width: int, density: float) -> None:
    # Given a random mask, compressed by pycocotools
    mask = (np.random.default_rng(seed).random((height, width)) < density).astype(np.uint8)
    encoded = mask_utils.encode(np.asfortranarray(mask))
    compressed = Rle(size=(height, width), counts=encoded["counts"].decode())

    # Then the runs, area and box match the mask
    assert rle_counts(compressed.counts) == column_runs(mask)
    geometry = rle_geometry(compressed)
    assert geometry is not None
    assert geometry[0] == float(mask_utils.area(encoded))
    if mask.any():
        box_x, box_y, box_width, box_height = mask_utils.toBbox(encoded)
        assert geometry[1:] == (box_x, box_y, box_x + box_width, box_y + box_height)


def test_an_uncompressed_rle_box_has_its_area_and_bounds() -> None:
    rle = Rle.model_validate(box_rle(3, 5, 4, 2, image_width=10, image_height=8))

    assert rle_geometry(rle) == (8.0, 3.0, 5.0, 7.0, 7.0)


@pytest.mark.parametrize(
    "rle",
    [
        Rle(size=(4, 4), counts="\x7f\x7f"),  # characters outside the alphabet
        Rle(size=(4, 4), counts=[3, 4]),  # does not cover 16 pixels
        Rle(size=(4, 4), counts=[20, -4]),  # negative run
        Rle(size=(4, 4), counts="1g"),  # ends inside a number
    ],
)
def test_malformed_rles_are_broken(rle: Rle) -> None:
    assert rle_geometry(rle) is None


def test_valid_rle_annotations_are_used_and_bad_ones_dropped() -> None:
    # Given RLE masks beside polygons: a good box, one of another image size, one malformed
    builder = healthy_dataset()
    image = builder.images[0].id
    good = builder.add_annotation(
        image, "nucleus", box_rle(10, 10, 20, 20, image_width=128, image_height=128)
    )
    wrong_size = builder.add_annotation(
        image, "nucleus", box_rle(1, 1, 5, 5, image_width=64, image_height=64)
    )
    malformed = builder.add_annotation(image, "nucleus", {"size": [128, 128], "counts": [5, 5]})

    validation = validate_dataset(builder)

    assert validation.plan is not None
    warning = next(
        issue for issue in validation.report.warnings if issue.code == "invalid_annotations_dropped"
    )
    assert warning.context["reasons"] == {"rle_size_mismatch": 1, "malformed_rle": 1}
    assert warning.context["examples"] == [wrong_size, malformed]
    kept = {
        annotation["id"]: annotation
        for annotation in validation.plan.train.annotations + validation.plan.test.annotations
    }
    assert kept[good]["area"] == 400.0
    assert kept[good]["bbox"] == [10.0, 10.0, 20.0, 20.0]


def test_nan_coordinates_make_the_dataset_unreadable() -> None:
    # NaN is not JSON; a file that holds it must not slip through the geometry checks
    builder = healthy_dataset(images=6)
    store = builder.store()
    body = builder.to_bytes().replace(b'"segmentation": [[', b'"segmentation": [[NaN, ', 1)
    store.put("lab", "cells", "annotations.json", body)

    validation = validate_dataset(builder, store=store)

    assert [issue.code for issue in validation.report.errors] == ["dataset_unreadable"]


def test_an_outline_touching_the_image_edge_is_kept() -> None:
    # Given a polygon whose vertices sit on the far edge (pixel-edge convention) and half a pixel past it
    builder = DatasetBuilder(classes=["nucleus"])
    builder.add_images(20, objects={"nucleus": 3})
    on_edge = builder.add_annotation(1, "nucleus", [[100.0, 100.0, 128.0, 100.0, 128.5, 128.0, 100.0, 128.0]])

    validation = validate_dataset(builder)

    assert validation.plan is not None
    kept = {
        annotation["id"]
        for annotation in validation.plan.train.annotations + validation.plan.test.annotations
    }
    assert on_edge in kept
