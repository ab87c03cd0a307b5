"""Measurements of labelled objects, as scikit-image's `regionprops` defines them.

Everything is computed for all objects at once by compiled passes over the label image
(measure_kernels.py); the convex area (for solidity) comes from one hull per object, counted as
scikit-image's `convex_hull_image` counts it.

Conventions (regionprops'): coordinates are pixel indices, so the centre of the top-left pixel is
(0, 0) and a centroid is the mean row and column of the object's pixels; the bounding box is the
half-open range of rows and columns (x, y = first column and row; width, height in pixels);
`perimeter` is regionprops' `perimeter` (`skimage.measure.perimeter` with 4-connectivity: border
pixels weighted by their neighbourhood, Benkrid and Crookes), not `perimeter_crofton`;
eccentricity is that of the ellipse with the object's second central moments; solidity is the
area over the area of the convex hull image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segpipe_trainer import measure_kernels as kernels


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
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    image = np.ascontiguousarray(image)
    area, boxes, moments, origins, sums, maxima, perimeter = kernels.raster_pass(labels, image, count)
    if np.any(area[1:] == 0):
        raise ValueError("measure_objects needs every label 1..N present")
    safe = np.maximum(area, 1).astype(np.float64)
    mean_dy, mean_dx = moments[:, 0] / safe, moments[:, 1] / safe
    row_var = moments[:, 2] / safe - mean_dy**2
    col_var = moments[:, 3] / safe - mean_dx**2
    covariance = moments[:, 4] / safe - mean_dy * mean_dx
    centroid_y, centroid_x = origins[:, 0] + mean_dy, origins[:, 1] + mean_dx
    top, left, bottom, right = (boxes[1:, side].astype(np.float64) for side in range(4))
    return Measurements(
        area=area[1:].astype(np.float64),
        perimeter=perimeter[1:],
        centroid_x=centroid_x[1:],
        centroid_y=centroid_y[1:],
        bbox_x=left,
        bbox_y=top,
        bbox_width=right - left,
        bbox_height=bottom - top,
        eccentricity=_eccentricities(row_var, col_var, covariance),
        solidity=area[1:] / kernels.convex_areas(labels, boxes),
        mean_intensity=sums[:, 1:] / safe[1:],
        max_intensity=maxima[:, 1:],
    )


def _eccentricities(row_var: np.ndarray, col_var: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """Eccentricity of the ellipse with each object's second central moments (index 0 dropped)."""
    half_sum = (row_var + col_var) / 2
    spread = np.sqrt(((row_var - col_var) / 2) ** 2 + covariance**2)
    major = np.maximum(half_sum + spread, 0.0)
    minor = np.maximum(half_sum - spread, 0.0)
    ratio = np.divide(minor, major, out=np.ones_like(major), where=major > 0)
    return np.sqrt(np.clip(1.0 - ratio, 0.0, 1.0))[1:]
