"""The compiled measurements against scikit-image's `regionprops`, the oracle, on shapes chosen to
break a hull or a perimeter: thresholded noise (holes, spurs, one-pixel objects, objects cut into
several pieces under one label), objects on every edge of the image, thin lines and single rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import regionprops
from skimage.morphology import convex_hull_image

from segpipe_trainer.measure import measure_objects


def _noise_labels(*, size: int, seed: int, scatter: bool) -> np.ndarray:
    """Labels of thresholded smooth noise; with `scatter`, each label is given to several
    disconnected components at once (one object in pieces)."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=(size, size)), 1.5)
    labels, count = ndi.label(field > 0.05)
    if scatter:
        merged = rng.integers(1, max(count // 3, 2) + 1, count + 1)
        merged[0] = 0
        labels = merged[labels]
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)


def _edge_and_line_labels() -> np.ndarray:
    labels = np.zeros((24, 31), dtype=np.int32)
    labels[0, :] = 1  # the whole top row
    labels[5:20, 0] = 2  # a column on the left edge
    labels[23, 10:12] = 3  # two pixels on the bottom edge
    labels[10, 10] = 4  # one pixel
    labels[3:22, 30] = 5  # the right edge
    for step in range(12):  # a diagonal line, one pixel thick
        labels[6 + step, 8 + step] = 6
    labels[12:16, 22:26] = 7  # a square with a hole
    labels[13:15, 23:25] = 0
    return labels


def _assert_like_regionprops(labels: np.ndarray, pixels: np.ndarray, *, mean_rtol: float = 1e-12) -> None:
    measured = measure_objects(labels, pixels)
    props = regionprops(labels, intensity_image=np.moveaxis(pixels, 0, -1))
    assert measured.count == len(props)
    for index, prop in enumerate(props):
        assert measured.area[index] == prop.area
        assert measured.solidity[index] == prop.solidity, f"label {prop.label}"
        assert measured.perimeter[index] == pytest.approx(prop.perimeter, rel=1e-12)
        assert measured.eccentricity[index] == pytest.approx(prop.eccentricity, rel=1e-9, abs=1e-12)
        assert (measured.centroid_y[index], measured.centroid_x[index]) == pytest.approx(prop.centroid)
        top, left, bottom, right = prop.bbox
        assert (measured.bbox_y[index], measured.bbox_x[index]) == (top, left)
        assert (measured.bbox_height[index], measured.bbox_width[index]) == (bottom - top, right - left)
        np.testing.assert_allclose(measured.mean_intensity[:, index], prop.intensity_mean, rtol=mean_rtol)
        np.testing.assert_array_equal(measured.max_intensity[:, index], prop.intensity_max)


@pytest.mark.parametrize(("seed", "scatter"), [(0, False), (1, False), (2, True), (3, True)])
def test_noise_shapes_match_regionprops(seed: int, scatter: bool) -> None:
    labels = _noise_labels(size=96, seed=seed, scatter=scatter)
    pixels = np.random.default_rng(seed).integers(0, 60000, (2, *labels.shape)).astype(np.uint16)
    assert labels.max() > 10
    _assert_like_regionprops(labels, pixels)


def test_edge_lines_and_holes_match_regionprops_over_a_signed_float_image() -> None:
    labels = _edge_and_line_labels()
    pixels = np.random.default_rng(5).normal(-3.0, 1.0, (1, *labels.shape)).astype(np.float32)
    # regionprops averages float32 pixels in float32; the measurements add them in float64.
    _assert_like_regionprops(labels, pixels, mean_rtol=1e-6)


def test_convex_areas_equal_convex_hull_image_pixel_for_pixel_counts() -> None:
    """Solidity hangs on the hull's pixel count alone; it is compared, per object, with
    `convex_hull_image` of the object's own crop, on many small random shapes."""
    labels = _noise_labels(size=160, seed=9, scatter=True)
    measured = measure_objects(labels, np.zeros((1, *labels.shape), dtype=np.uint8))
    boxes = ndi.find_objects(labels)
    expected = [convex_hull_image(labels[box] == label).sum() for label, box in enumerate(boxes, start=1)]
    convex = np.asarray(expected, dtype=np.float64)
    np.testing.assert_allclose(measured.area / measured.solidity, convex, rtol=1e-12)


def test_a_missing_label_is_refused() -> None:
    labels = np.zeros((8, 8), dtype=np.int32)
    labels[1, 1], labels[5, 5] = 1, 3
    with pytest.raises(ValueError, match="every label"):
        measure_objects(labels, np.zeros((1, 8, 8), dtype=np.uint8))


def test_no_objects_give_empty_measurements() -> None:
    measured = measure_objects(np.zeros((5, 7), dtype=np.int32), np.ones((3, 5, 7), dtype=np.uint16))
    assert measured.count == 0
    assert measured.mean_intensity.shape == (3, 0)
