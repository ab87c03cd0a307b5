"""Compiled loops (numba) of the per-object measurements in measure.py.

Three passes, each linear in what it visits: one raster pass over the label image (area,
bounding box, moments, intensity sums and maxima, and which pixels lie on their object's border),
one over the border pixels (perimeter codes), and one hull per object, built from the first and
last pixel of each of its rows. Moments are summed from each object's first pixel, so the central
moments keep their precision far from the image's origin. The convex area is counted with integer
arithmetic on doubled coordinates, so a pixel centre exactly on the hull's edge is counted as
scikit-image's `convex_hull_image` counts it (borders included).
"""

from __future__ import annotations

import numba
import numpy as np

from segpipe_trainer.kernels import label_at

#: skimage.measure.perimeter's weight of a border pixel by its code 1 + 2 x (4-neighbours on the
#: border) + 10 x (diagonal neighbours on the border).
PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
PERIMETER_WEIGHTS[np.array([5, 7, 15, 17, 25, 27])] = 1.0
PERIMETER_WEIGHTS[np.array([21, 33])] = np.sqrt(2.0)
PERIMETER_WEIGHTS[np.array([13, 23])] = (1 + np.sqrt(2.0)) / 2


@numba.njit(cache=True)
def _grown(array: np.ndarray) -> np.ndarray:
    """A copy twice as long (the rest uninitialised)."""
    bigger = np.empty(2 * array.size, dtype=array.dtype)
    bigger[: array.size] = array
    return bigger


@numba.njit(cache=True)
def raster_pass(
    labels: np.ndarray, image: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Over an int32 H x W label image of objects 1..count and its C x H x W image:

    (area int64 [count+1]; boxes int64 [count+1, 4] (top, left, bottom, right; bottom and right
    exclusive); moments float64 [count+1, 5]: sums of dy, dx, dy², dx², dy·dx with (dy, dx) the
    offset of a pixel from its object's first pixel (in raster order, that is (top, boxes' first
    column of the top row)); origins int64 [count+1, 2]: that first pixel (row, col); intensity
    sums and maxima float64 [C, count+1]; border uint8 H x W: 1 where a labelled pixel has a
    4-neighbour outside its object, the image's edge included; and the flat indices of those
    border pixels in raster order)."""
    height, width = labels.shape
    channels = image.shape[0]
    area = np.zeros(count + 1, dtype=np.int64)
    boxes = np.zeros((count + 1, 4), dtype=np.int64)
    moments = np.zeros((count + 1, 5), dtype=np.float64)
    origins = np.zeros((count + 1, 2), dtype=np.int64)
    intensity = np.zeros((2, channels, count + 1), dtype=np.float64)
    intensity[1] = -np.inf
    border = np.zeros((height, width), dtype=np.uint8)
    edges = np.empty(max(1024, height * width // 16), dtype=np.int64)
    edge_count = 0
    for row in range(height):
        for col in range(width):
            label = labels[row, col]
            if label <= 0:
                continue
            if area[label] == 0:
                origins[label, 0], origins[label, 1] = row, col
                boxes[label, 0], boxes[label, 1] = row, col
                boxes[label, 2], boxes[label, 3] = row + 1, col + 1
            else:
                boxes[label, 1] = min(boxes[label, 1], col)
                boxes[label, 2] = row + 1
                boxes[label, 3] = max(boxes[label, 3], col + 1)
            area[label] += 1
            dy = np.float64(row - origins[label, 0])
            dx = np.float64(col - origins[label, 1])
            moments[label, 0] += dy
            moments[label, 1] += dx
            moments[label, 2] += dy * dy
            moments[label, 3] += dx * dx
            moments[label, 4] += dy * dx
            for channel in range(channels):
                value = np.float64(image[channel, row, col])
                intensity[0, channel, label] += value
                intensity[1, channel, label] = max(intensity[1, channel, label], value)
            if (
                label_at(labels, row - 1, col) != label
                or label_at(labels, row + 1, col) != label
                or label_at(labels, row, col - 1) != label
                or label_at(labels, row, col + 1) != label
            ):
                border[row, col] = 1
                if edge_count == edges.size:
                    edges = _grown(edges)
                edges[edge_count] = row * width + col
                edge_count += 1
    return area, boxes, moments, origins, intensity[0], intensity[1], border, edges[:edge_count]


@numba.njit(cache=True, inline="always")
def _on_border(labels: np.ndarray, border: np.ndarray, row: int, col: int, label: int) -> int:
    """1 if (row, col) is a border pixel of `label`, else 0."""
    if label_at(labels, row, col) == label and border[row, col] == 1:
        return 1
    return 0


@numba.njit(cache=True)
def perimeters(
    labels: np.ndarray, border: np.ndarray, edges: np.ndarray, count: int, weights: np.ndarray
) -> np.ndarray:
    """skimage.measure.perimeter(labels == n, 4) of every object n, float64 [count+1]: the weights
    of its border pixels' codes, each code counting the pixel's 4- and diagonal neighbours that are
    border pixels of the same object."""
    width = labels.shape[1]
    perimeter = np.zeros(count + 1, dtype=np.float64)
    for index in edges:
        row, col = index // width, index % width
        label = labels[row, col]
        four = (
            _on_border(labels, border, row - 1, col, label)
            + _on_border(labels, border, row + 1, col, label)
            + _on_border(labels, border, row, col - 1, label)
            + _on_border(labels, border, row, col + 1, label)
        )
        diagonal = (
            _on_border(labels, border, row - 1, col - 1, label)
            + _on_border(labels, border, row - 1, col + 1, label)
            + _on_border(labels, border, row + 1, col - 1, label)
            + _on_border(labels, border, row + 1, col + 1, label)
        )
        perimeter[label] += weights[1 + 2 * four + 10 * diagonal]
    return perimeter


#: No pixel on a level yet (vmin and vmax start here).
_EMPTY = 1 << 40


@numba.njit(cache=True)
def _row_levels(labels: np.ndarray, label: int, box: np.ndarray, vmin: np.ndarray, vmax: np.ndarray) -> None:
    """The least and greatest doubled column (v = 2 col ± 1) of the object's pixel-edge mid-points
    on each doubled row u = 2 top - 1 + j (levels j = 0 .. 2 height): a pixel (row, col) has
    mid-points (2 row ± 1, 2 col) and (2 row, 2 col ± 1). Only each row's first and last pixel
    matter: the mid-points of those between lie on the segments joining them."""
    top, left, bottom, right = box[0], box[1], box[2], box[3]
    levels = 2 * (bottom - top) + 1
    vmin[:levels] = _EMPTY
    vmax[:levels] = -_EMPTY
    for row in range(top, bottom):
        first = left
        while first < right and labels[row, first] != label:
            first += 1
        if first == right:
            continue
        last = right - 1
        while labels[row, last] != label:
            last -= 1
        j = 2 * (row - top)
        for level in (j, j + 2):
            vmin[level] = min(vmin[level], 2 * first)
            vmax[level] = max(vmax[level], 2 * last)
        vmin[j + 1], vmax[j + 1] = 2 * first - 1, 2 * last + 1


@numba.njit(cache=True)
def _chain(values: np.ndarray, levels: int, lower: bool, chain_u: np.ndarray, chain_v: np.ndarray) -> int:
    """The lower (least v) or upper (greatest v) convex chain of the points (j, values[j]) of the
    levels that hold a pixel, left to right (Andrew's monotone chain; collinear points dropped);
    its length. u is the level j here: the chain's shape does not depend on the offset."""
    size = 0
    sign = 1 if lower else -1
    for j in range(levels):
        v = values[j]
        if v == _EMPTY or v == -_EMPTY:
            continue
        while size >= 2:
            turn = (chain_u[size - 1] - chain_u[size - 2]) * (v - chain_v[size - 2]) - (
                chain_v[size - 1] - chain_v[size - 2]
            ) * (j - chain_u[size - 2])
            if sign * turn > 0:
                break
            size -= 1
        chain_u[size], chain_v[size] = j, v
        size += 1
    return size


@numba.njit(cache=True)
def _centres_between(
    lower_u: np.ndarray, lower_v: np.ndarray, upper_u: np.ndarray, upper_v: np.ndarray, rows: int
) -> int:
    """Pixel centres (even v) on the levels j = 2 r + 1, r = 0 .. rows - 1, between the lower and
    the upper chain, borders included; each chain's u strictly increases, so no edge is vertical."""
    inside = 0
    low_edge, high_edge = 0, 0
    for r in range(rows):
        j = 2 * r + 1
        while lower_u[low_edge + 1] < j:
            low_edge += 1
        while upper_u[high_edge + 1] < j:
            high_edge += 1
        au, av = lower_u[low_edge], lower_v[low_edge]
        step = (lower_v[low_edge + 1] - av) * (j - au)
        low = av - ((-step) // (lower_u[low_edge + 1] - au))
        au, av = upper_u[high_edge], upper_v[high_edge]
        high = av + ((upper_v[high_edge + 1] - av) * (j - au)) // (upper_u[high_edge + 1] - au)
        if low <= high:
            inside += high // 2 + ((-low) // 2) + 1
    return inside


@numba.njit(cache=True)
def convex_areas(labels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Pixels of each object's convex hull image (regionprops' `area_convex`), float64 [count]
    for objects 1..count."""
    count = boxes.shape[0] - 1
    tallest = 1
    for label in range(1, count + 1):
        tallest = max(tallest, boxes[label, 2] - boxes[label, 0])
    size = 2 * tallest + 1
    vmin, vmax = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
    chains = np.empty((4, size), dtype=np.int64)
    areas = np.zeros(count, dtype=np.float64)
    for label in range(1, count + 1):
        rows = boxes[label, 2] - boxes[label, 0]
        _row_levels(labels, label, boxes[label], vmin, vmax)
        _chain(vmin, 2 * rows + 1, True, chains[0], chains[1])
        _chain(vmax, 2 * rows + 1, False, chains[2], chains[3])
        areas[label - 1] = _centres_between(chains[0], chains[1], chains[2], chains[3], rows)
    return areas
