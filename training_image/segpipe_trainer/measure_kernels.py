"""Compiled loops (numba) of the per-object measurements in measure.py.

Two passes, each linear in what it visits: one raster pass over the label image, run by run along
each row (area, bounding box, moments, intensity sums and maxima, the border pixels and, one row
behind, their perimeter codes), and one hull per object, built from the first and last pixel of
each of its rows. Moments are summed from each object's first pixel, in integers, so the central
moments keep their precision far from the image's origin. The convex area is counted with integer
arithmetic on doubled coordinates, so a pixel centre exactly on the hull's edge is counted as
scikit-image's `convex_hull_image` counts it (borders included).
"""

from __future__ import annotations

import numba
import numpy as np

#: skimage.measure.perimeter's weight of a border pixel by its code 1 + 2 x (4-neighbours on the
#: border) + 10 x (diagonal neighbours on the border).
PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
PERIMETER_WEIGHTS[np.array([5, 7, 15, 17, 25, 27])] = 1.0
PERIMETER_WEIGHTS[np.array([21, 33])] = np.sqrt(2.0)
PERIMETER_WEIGHTS[np.array([13, 23])] = (1 + np.sqrt(2.0)) / 2


@numba.njit(cache=True)
def raster_pass(
    labels: np.ndarray, image: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Over an int32 H x W label image of objects 1..count and its C x H x W image:

    (area int64 [count+1]; boxes int64 [count+1, 4] (top, left, bottom, right; bottom and right
    exclusive); moments float64 [count+1, 5]: sums of dy, dx, dy², dx², dy·dx with (dy, dx) the
    offset of a pixel from its object's first pixel (in raster order, that is (top, boxes' first
    column of the top row)), summed exactly in integers over each run of a label along a row;
    origins int64 [count+1, 2]: that first pixel (row, col); intensity sums and maxima float64
    [C, count+1], pixels added in raster order; perimeter float64 [count+1]:
    skimage.measure.perimeter(labels == n, 4) of every object n, the weights of its border pixels'
    codes added in raster order, each code counting the pixel's 4- and diagonal neighbours that are
    border pixels of the same object (a border pixel: one with a 4-neighbour outside its object,
    the image's edge included)).

    Row by row: a row's runs and border pixels once the rows on either side are known, and the
    perimeter codes of the row before it, whose neighbours' border flags are then all known.
    """
    height, width = labels.shape
    area = np.zeros(count + 1, dtype=np.int64)
    boxes = np.zeros((count + 1, 4), dtype=np.int64)
    moments = np.zeros((count + 1, 5), dtype=np.int64)
    origins = np.zeros((count + 1, 2), dtype=np.int64)
    intensity = np.zeros((2, image.shape[0], count + 1), dtype=np.float64)
    intensity[1] = -np.inf
    perimeter = np.zeros(count + 1, dtype=np.float64)
    # Border flags and border columns of three rows, by row % 3; a row of zeros off the image.
    flags = np.zeros((4, width), dtype=np.uint8)
    border = np.zeros((3, width), dtype=np.int64)
    found = np.zeros(3, dtype=np.int64)
    nothing = np.zeros(width, dtype=labels.dtype)
    for row in range(height + 1):
        if row < height:
            slot = row % 3
            flags[slot, border[slot, : found[slot]]] = 0
            found[slot] = _row_runs(
                labels,
                image,
                row,
                nothing,
                (area, boxes, moments, origins),
                intensity,
                flags[slot],
                border[slot],
            )
        if row >= 1:
            at = row - 1
            _row_perimeter(labels, at, nothing, flags, border[at % 3, : found[at % 3]], perimeter)
    return area, boxes, moments.astype(np.float64), origins, intensity[0], intensity[1], perimeter


@numba.njit(cache=True)
def _row_runs(  # long: a numba kernel: nopython code takes flat arrays and scalars, not objects
    labels: np.ndarray,
    image: np.ndarray,
    row: int,
    nothing: np.ndarray,
    shapes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    intensity: np.ndarray,
    flags: np.ndarray,
    border: np.ndarray,
) -> int:
    """Add one row's runs of equal labels to area, boxes, moments and origins (`shapes`) and to the
    intensities; flag its border pixels and list their columns in `border`; how many."""
    area, boxes, moments, origins = shapes
    width = labels.shape[1]
    current = labels[row]
    above = labels[row - 1] if row > 0 else nothing
    below = labels[row + 1] if row + 1 < labels.shape[0] else nothing
    found = 0
    col = 0
    while col < width:
        label = current[col]
        if label <= 0:
            col += 1
            continue
        start = col
        while col < width and current[col] == label:
            col += 1
        if area[label] == 0:
            origins[label, 0], origins[label, 1] = row, start
            boxes[label, 0], boxes[label, 1], boxes[label, 2], boxes[label, 3] = row, start, row + 1, col
        else:
            boxes[label, 1] = min(boxes[label, 1], start)
            boxes[label, 2] = row + 1
            boxes[label, 3] = max(boxes[label, 3], col)
        _add_run_moments(moments[label], col - start, row - origins[label, 0], start - origins[label, 1])
        area[label] += col - start
        for channel in range(image.shape[0]):
            total, highest = intensity[0, channel, label], intensity[1, channel, label]
            for x in range(start, col):
                value = np.float64(image[channel, row, x])
                total += value
                highest = max(highest, value)
            intensity[0, channel, label], intensity[1, channel, label] = total, highest
        for x in range(start, col):
            if x == start or x == col - 1 or above[x] != label or below[x] != label:
                flags[x] = 1
                border[found] = x
                found += 1
    return found


@numba.njit(cache=True, inline="always")
def _add_run_moments(moments: np.ndarray, length: int, dy: int, first_dx: int) -> None:
    """Add the sums of dy, dx, dy², dx², dy·dx over `length` pixels dx = first_dx, first_dx + 1, ...
    at one dy, in integers: Σ x² from a to b is P(b) - P(a - 1), P(k) = k (k + 1) (2k + 1) / 6."""
    last_dx = first_dx + length - 1
    sum_dx = (first_dx + last_dx) * length // 2
    before = first_dx - 1
    sum_dx2 = (last_dx * (last_dx + 1) * (2 * last_dx + 1) - before * (before + 1) * (2 * before + 1)) // 6
    moments[0] += length * dy
    moments[1] += sum_dx
    moments[2] += length * dy * dy
    moments[3] += sum_dx2
    moments[4] += dy * sum_dx


@numba.njit(cache=True)
def _row_perimeter(
    labels: np.ndarray,
    row: int,
    nothing: np.ndarray,
    flags: np.ndarray,
    border: np.ndarray,
    perimeter: np.ndarray,
) -> None:
    """Add the weights of one row's border pixels (columns `border`) to their objects' perimeters;
    `flags` holds the border flags of the rows around it (by row % 3, row 3 all zeros)."""
    height, width = labels.shape
    current = labels[row]
    above = labels[row - 1] if row > 0 else nothing
    below = labels[row + 1] if row + 1 < height else nothing
    flags_above = flags[(row - 1) % 3] if row > 0 else flags[3]
    flags_here = flags[row % 3]
    flags_below = flags[(row + 1) % 3] if row + 1 < height else flags[3]
    for col in border:
        label = current[col]
        left, right = col - 1, col + 1
        four = _flag(above, flags_above, col, label) + _flag(below, flags_below, col, label)
        diagonal = 0
        if left >= 0:
            four += _flag(current, flags_here, left, label)
            diagonal += _flag(above, flags_above, left, label) + _flag(below, flags_below, left, label)
        if right < width:
            four += _flag(current, flags_here, right, label)
            diagonal += _flag(above, flags_above, right, label) + _flag(below, flags_below, right, label)
        perimeter[label] += PERIMETER_WEIGHTS[1 + 2 * four + 10 * diagonal]


@numba.njit(cache=True, inline="always")
def _flag(labels: np.ndarray, flags: np.ndarray, col: int, label: int) -> int:
    """1 if the pixel at `col` of a row is a border pixel of `label`, else 0."""
    if labels[col] == label and flags[col] == 1:
        return 1
    return 0


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
