"""Measurements of labelled objects, as scikit-image's `regionprops` defines them.

Everything but the convex hull is computed for all objects at once from the label image (bincount
over the labelled pixels); the convex area (for solidity) is one `convex_hull_image` per object,
as regionprops computes it.

Conventions (regionprops'): coordinates are pixel indices, so the centre of the top-left pixel is
(0, 0) and a centroid is the mean row and column of the object's pixels; the bounding box is the
half-open range of rows and columns (x, y = first column and row; width, height in pixels);
`perimeter` is regionprops' `perimeter` (`skimage.measure.perimeter` with 4-connectivity: border
pixels weighted by their neighbourhood, Benkrid and Crookes), not `perimeter_crofton`;
eccentricity is that of the ellipse with the object's second central moments; solidity is the
area over the area of the convex hull image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import convex_hull_image

#: skimage.measure.perimeter's weights for a border pixel's code 1 + 2 x (4-neighbours on the
#: border) + 10 x (diagonal neighbours on the border).
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2
_FOUR = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))


@dataclass(frozen=True)
class Measurements:
    """Per object n = 1..N, each array of length N (index n - 1); intensities C x N."""

    area: np.ndarray
    perimeter: np.ndarray
    centroid_x: np.ndarray
    centroid_y: np.ndarray
    bbox_x: np.ndarray
    bbox_y: np.ndarray
    bbox_width: np.ndarray
    bbox_height: np.ndarray
    eccentricity: np.ndarray
    solidity: np.ndarray
    mean_intensity: np.ndarray
    max_intensity: np.ndarray

    @property
    def count(self) -> int:
        return len(self.area)


def measure_objects(labels: np.ndarray, image: np.ndarray) -> Measurements:
    """Measurements of the objects 1..N of an int H x W label image, every label present, over the
    C x H x W `image` (intensities in its own units: pass the raw pixels, not normalised ones)."""
    count = int(labels.max(initial=0))
    width = labels.shape[1]
    pixels = np.flatnonzero(labels)
    label_of = labels.ravel()[pixels].astype(np.intp)
    rows, cols = np.divmod(pixels, width)
    area = np.bincount(label_of, minlength=count + 1).astype(np.float64)
    safe = np.maximum(area, 1.0)
    centroid_y = np.bincount(label_of, weights=rows, minlength=count + 1) / safe
    centroid_x = np.bincount(label_of, weights=cols, minlength=count + 1) / safe
    boxes = ndi.find_objects(labels.astype(np.int32, copy=False), max_label=count)
    if any(box is None for box in boxes):
        raise ValueError("measure_objects needs every label 1..N present")
    top = np.array([box[0].start for box in boxes], dtype=np.int64)
    left = np.array([box[1].start for box in boxes], dtype=np.int64)
    bottom = np.array([box[0].stop for box in boxes], dtype=np.int64)
    right = np.array([box[1].stop for box in boxes], dtype=np.int64)
    means, maxima = _intensities(labels, image, pixels=pixels, label_of=label_of, area=safe, count=count)
    return Measurements(
        area=area[1:],
        perimeter=_perimeters(labels, count=count),
        centroid_x=centroid_x[1:],
        centroid_y=centroid_y[1:],
        bbox_x=left.astype(np.float64),
        bbox_y=top.astype(np.float64),
        bbox_width=(right - left).astype(np.float64),
        bbox_height=(bottom - top).astype(np.float64),
        eccentricity=_eccentricities(
            rows - centroid_y[label_of], cols - centroid_x[label_of], label_of=label_of, area=safe
        ),
        solidity=area[1:] / _convex_areas(labels, boxes=boxes),
        mean_intensity=means,
        max_intensity=maxima,
    )


def _shifted(padded: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The H x W view of a padded (H+2) x (W+2) array moved by (dy, dx)."""
    height, width = padded.shape[0] - 2, padded.shape[1] - 2
    return padded[1 + dy : height + 1 + dy, 1 + dx : width + 1 + dx]


def _perimeters(labels: np.ndarray, *, count: int) -> np.ndarray:
    """skimage.measure.perimeter(labels == n, 4) for every n at once.

    A border pixel is one of an object with a 4-neighbour outside it (another label, background or
    beyond the image); its code counts its border neighbours of the same object, as skimage's
    convolution does on that object's mask alone.
    """
    padded = np.pad(labels, 1)
    inside = labels > 0
    interior = inside.copy()
    for dy, dx in _FOUR:
        interior &= _shifted(padded, dy, dx) == labels
    border_labels = np.where(inside & ~interior, labels, 0)
    padded_border = np.pad(border_labels, 1)
    on_border = border_labels > 0
    code = on_border.astype(np.int64)
    for offsets, weight in ((_FOUR, 2), (_DIAGONAL, 10)):
        for dy, dx in offsets:
            code += weight * (on_border & (_shifted(padded_border, dy, dx) == border_labels))
    where = np.flatnonzero(on_border)
    return np.bincount(
        border_labels.ravel()[where], weights=_PERIMETER_WEIGHTS[code.ravel()[where]], minlength=count + 1
    )[1:]


def _eccentricities(dy: np.ndarray, dx: np.ndarray, *, label_of: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Eccentricity from the central moments (pixel offsets dy, dx from each object's centroid)."""
    size = len(area)
    row_var = np.bincount(label_of, weights=dy * dy, minlength=size) / area
    col_var = np.bincount(label_of, weights=dx * dx, minlength=size) / area
    covariance = np.bincount(label_of, weights=dy * dx, minlength=size) / area
    half_sum = (row_var + col_var) / 2
    spread = np.sqrt(((row_var - col_var) / 2) ** 2 + covariance**2)
    major = np.maximum(half_sum + spread, 0.0)
    minor = np.maximum(half_sum - spread, 0.0)
    ratio = np.divide(minor, major, out=np.ones_like(major), where=major > 0)
    return np.sqrt(np.clip(1.0 - ratio, 0.0, 1.0))[1:]


def _convex_areas(labels: np.ndarray, *, boxes: list[tuple[slice, slice]]) -> np.ndarray:
    """Pixels of each object's convex hull image (regionprops' `area_convex`)."""
    return np.array(
        [float(convex_hull_image(labels[box] == label).sum()) for label, box in enumerate(boxes, start=1)],
        dtype=np.float64,
    )


def _intensities(
    labels: np.ndarray,
    image: np.ndarray,
    *,
    pixels: np.ndarray,
    label_of: np.ndarray,
    area: np.ndarray,
    count: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, max) intensity per channel and object, each C x N float64."""
    channels = image.shape[0]
    means = np.zeros((channels, count), dtype=np.float64)
    maxima = np.zeros((channels, count), dtype=np.float64)
    if count == 0:
        return means, maxima
    index = np.arange(1, count + 1)
    for channel in range(channels):
        plane = image[channel]
        values = plane.ravel()[pixels].astype(np.float64)
        means[channel] = (np.bincount(label_of, weights=values, minlength=count + 1) / area)[1:]
        maxima[channel] = ndi.maximum(plane, labels=labels, index=index)
    return means, maxima
