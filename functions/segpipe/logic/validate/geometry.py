"""Polygon and RLE geometry: area and bounds, or None for a malformed shape.

Pure Python over flat lists; the work per ring is C-level `map`, `sum` and `sort` over slices.
"""

from __future__ import annotations

import math
from operator import mul

from segpipe.models.coco import Rle

#: (area, x0, y0, x1, y1): area in pixels, bounds in image coordinates.
Geometry = tuple[float, float, float, float, float]


def polygon_geometry(rings: list[list[float]]) -> Geometry | None:
    """Shoelace area (summed over rings) and vertex bounds of COCO polygon rings.

    Each ring is a flat [x0, y0, x1, y1, ...] list. None when there is no ring, or a ring has
    fewer than 3 points or an odd number of coordinates.
    """
    if len(rings) == 1:
        return ring_geometry(rings[0])
    parts = [ring_geometry(ring) for ring in rings]
    if not parts or None in parts:
        return None
    known = [part for part in parts if part is not None]
    return (
        sum(part[0] for part in known),
        min(part[1] for part in known),
        min(part[2] for part in known),
        max(part[3] for part in known),
        max(part[4] for part in known),
    )


def ring_geometry(ring: list[float]) -> Geometry | None:
    """Area and bounds of one flat ring; None for fewer than 3 points or an odd coordinate count."""
    if len(ring) < 6 or len(ring) & 1:
        return None
    xs = ring[0::2]
    ys = ring[1::2]
    # ring[3::2] is ys[1:] and ring[2::2] is xs[1:]: the same products, one copy fewer each
    twice = sum(map(mul, xs, ring[3::2])) - sum(map(mul, ys, ring[2::2])) + xs[-1] * ys[0] - ys[-1] * xs[0]
    xs.sort()  # list.sort compares floats faster than min() and max() together
    ys.sort()
    return abs(twice) / 2, xs[0], ys[0], xs[-1], ys[-1]


def rle_counts(counts: str | list[int]) -> list[int]:
    """Run lengths of a COCO RLE; a compressed string is decoded (pycocotools' LEB128-like code).

    Raises ValueError on a malformed string.
    """
    if isinstance(counts, list):
        return counts
    runs: list[int] = []
    position, length = 0, len(counts)
    while position < length:
        value, shift, more = 0, 0, True
        while more:
            if position >= length:
                raise ValueError("RLE string ends inside a number")
            chunk = ord(counts[position]) - 48
            if not 0 <= chunk < 64:
                raise ValueError("RLE string holds a character outside its alphabet")
            value |= (chunk & 0x1F) << shift
            more = bool(chunk & 0x20)
            position += 1
            shift += 5
            if not more and chunk & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def rle_geometry(rle: Rle) -> Geometry | None:
    """Area and pixel-edge bounds of an RLE mask (column-major runs, background first).

    None when the counts are malformed, negative, or do not cover the mask exactly.
    """
    height, width = rle.size
    try:
        runs = rle_counts(rle.counts)
    except ValueError:
        return None
    if sum(runs) != height * width or (runs and min(runs) < 0):
        return None
    area = sum(runs[1::2])
    if area == 0:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    x0 = y0 = math.inf
    x1 = y1 = -math.inf
    position = 0
    for index, run in enumerate(runs):
        if index & 1 and run:
            first, last = divmod(position, height), divmod(position + run - 1, height)
            x0, x1 = min(x0, first[0]), max(x1, last[0] + 1)
            spans_columns = first[0] != last[0]
            y0 = min(y0, 0 if spans_columns else first[1])
            y1 = max(y1, height if spans_columns else last[1] + 1)
        position += run
    return float(area), float(x0), float(y0), float(x1), float(y1)
