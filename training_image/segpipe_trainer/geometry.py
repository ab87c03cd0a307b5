"""Masks, COCO segmentations and outlines: the conversions between label images and annotations.

Coordinates follow COCO: `x` is the column, `y` the row, and polygon vertices lie on pixel edges, so
the pixel in row `r`, column `c` spans `[c, c + 1] x [r, r + 1]`. pycocotools rasterises a polygon by
the pixel centres it encloses, which makes an outline through pixel edges (or through the mid-points of
edges, as marching squares draws it) reproduce the mask exactly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage as ndi
from skimage import measure

from segpipe.models.coco import CocoAnnotation, Rle
from segpipe.models.trainer_io import PredictedObject
from segpipe_trainer.kernels import trace_outlines

if TYPE_CHECKING:
    from segpipe_trainer.postprocess import Instances

#: Background connectivity that pairs with marching squares' `fully_connected="low"`: background
#: pixels touching at a corner are connected, so foreground is 4-connected.
_EIGHT = np.ones((3, 3), dtype=bool)


#: (rows, cols) slices of an image.
Box = tuple[slice, slice]


def annotation_mask(
    segmentation: list[list[float]] | Rle | dict[str, Any], *, height: int, width: int
) -> np.ndarray:
    """bool H x W mask of one COCO segmentation (polygon rings or RLE), via pycocotools.

    Rings with fewer than three vertices cover nothing. An RLE whose size is not `[height, width]`
    raises ValueError.
    """
    mask = np.zeros((height, width), dtype=bool)
    crop, box = _boxed_mask(segmentation, height=height, width=width)
    mask[box] = crop
    return mask


def _boxed_mask(
    segmentation: list[list[float]] | Rle | dict[str, Any], *, height: int, width: int
) -> tuple[np.ndarray, Box]:
    """(bool crop, its box in the H x W image) of one segmentation; polygons are rasterised only
    inside their bounding box, RLE over the whole image."""
    if isinstance(segmentation, list):
        return _polygon_mask(segmentation, height=height, width=width)
    rle = segmentation.model_dump() if isinstance(segmentation, Rle) else dict(segmentation)
    size = [int(value) for value in rle["size"]]
    if size != [height, width]:
        raise ValueError(f"RLE size {size} differs from the image size {[height, width]}")
    counts = rle["counts"]
    if isinstance(counts, list):
        encoded = mask_utils.frPyObjects({"size": size, "counts": counts}, height, width)
    else:
        encoded = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return _decode(encoded), (slice(0, height), slice(0, width))


def _polygon_mask(rings: list[list[float]], *, height: int, width: int) -> tuple[np.ndarray, Box]:
    """(bool crop, box) of polygon rings, rasterised inside their bounding box only."""
    rings = [[float(value) for value in ring] for ring in rings if len(ring) >= 6]
    if not rings:
        return np.zeros((0, 0), dtype=bool), (slice(0, 0), slice(0, 0))
    xs = np.concatenate([ring[0::2] for ring in rings])
    ys = np.concatenate([ring[1::2] for ring in rings])
    # A one-pixel margin and whole-pixel shifts keep pycocotools' rounding identical to a full raster.
    x0, y0 = max(math.floor(xs.min()) - 1, 0), max(math.floor(ys.min()) - 1, 0)
    x1, y1 = min(math.ceil(xs.max()) + 1, width), min(math.ceil(ys.max()) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), dtype=bool), (slice(0, 0), slice(0, 0))
    shifted = [_shift(ring, dx=-x0, dy=-y0) for ring in rings]
    encoded = mask_utils.merge(mask_utils.frPyObjects(shifted, y1 - y0, x1 - x0))
    return _decode(encoded), (slice(y0, y1), slice(x0, x1))


def _decode(encoded: dict[str, Any]) -> np.ndarray:
    """bool H x W of one pycocotools RLE object."""
    with warnings.catch_warnings():
        # pycocotools 2.0.x builds its output through an `__array__` that numpy 2 deprecates.
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.asarray(mask_utils.decode(encoded), dtype=bool)


#: pycocotools' polygon raster keeps only int(POLYGON_SCALE * v + 0.5) of each coordinate v.
POLYGON_SCALE = 5


def _shift(ring: list[float], *, dx: int, dy: int) -> list[float]:
    """The ring moved by whole pixels so that pycocotools rounds every vertex exactly as before.

    Adding dx to a coordinate and then scaling can round to another integer than scaling first
    (5 * 2.3 gives 11.5, 5 * (2.3 - 1) gives 6.4999...). So a moved axis is handed over as k / 5,
    with k the integer pycocotools made of the original minus 5 * dx: 5 * (k / 5) lies within a
    rounding step of k, so it rounds back to k. A moved axis's values are all at least 1 (the
    box keeps a one-pixel margin), where truncation and flooring agree; an axis not moved is
    passed through untouched.
    """
    points = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
    for axis, offset in enumerate((dx, dy)):
        if offset:
            scaled = np.trunc(points[:, axis] * POLYGON_SCALE + 0.5)
            points[:, axis] = (scaled + POLYGON_SCALE * offset) / POLYGON_SCALE
    return [float(value) for value in points.ravel()]


def rasterize_instances(
    annotations: Sequence[CocoAnnotation], *, height: int, width: int, class_of: Mapping[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(labels int32 H x W, classes int64 [N+1]) of the annotations whose category is in `class_of`.

    `labels` is 0 on background and n on the n-th annotation kept; `classes[0] = 0` and
    `classes[n] = class_of[category_id]`. Where objects overlap, the later one wins, so an object may
    keep fewer pixels than its annotation (or none).
    """
    labels = np.zeros((height, width), dtype=np.int32)
    classes = [0]
    for annotation in annotations:
        if annotation.category_id not in class_of:
            continue
        crop, box = _boxed_mask(annotation.segmentation, height=height, width=width)
        classes.append(class_of[annotation.category_id])
        labels[box][crop] = len(classes) - 1
    return labels, np.asarray(classes, dtype=np.int64)


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygon rings (flat `[x0, y0, x1, y1, ...]`, pixel-edge coordinates) of a bool H x W mask.

    One ring per 4-connected piece of the mask with its holes filled: COCO polygons cannot keep a
    hole (pycocotools unions the rings), so a mask with holes gets its outer outline(s) only. Each
    vertex is a multiple of 0.5 and collinear vertices are dropped. [] for an empty mask.
    """
    return _rings(np.asarray(mask, dtype=bool), x0=0, y0=0)


def _rings(mask: np.ndarray, *, x0: int, y0: int) -> list[list[float]]:
    """Outer rings of a bool h x w mask whose top-left pixel is (x0, y0) in the image."""
    if not mask.any():
        return []
    filled = ndi.binary_fill_holes(mask, structure=_EIGHT)
    padded = np.pad(filled, 1).astype(np.uint8)
    rings = []
    for contour in measure.find_contours(padded, 0.5, fully_connected="low"):
        corners = _corners(contour)
        # Padding shifts rows and columns by one; pixel centres sit half a pixel inside the edges.
        xy = np.stack([corners[:, 1] + (x0 - 0.5), corners[:, 0] + (y0 - 0.5)], axis=1)
        rings.append([float(value) for value in xy.ravel()])
    return rings


def _corners(contour: np.ndarray) -> np.ndarray:
    """The vertices of a closed contour (P x 2, first point repeated last) where its direction turns."""
    points = contour[:-1] if np.array_equal(contour[0], contour[-1]) else contour
    incoming = points - np.roll(points, 1, axis=0)
    outgoing = np.roll(points, -1, axis=0) - points
    turn = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0]
    corners = points[np.abs(turn) > 1e-9]
    return corners if len(corners) >= 3 else points


def bounding_box(rows: slice, cols: slice) -> list[float]:
    """COCO `[x, y, width, height]` of the pixels in `rows` x `cols`."""
    return [
        float(cols.start),
        float(rows.start),
        float(cols.stop - cols.start),
        float(rows.stop - rows.start),
    ]


def objects_from_instances(
    instances: Instances, *, class_names: Sequence[str], score_floor: float
) -> list[PredictedObject]:
    """One PredictedObject per label scored at least `score_floor`, in label order.

    Each carries its category name (`class_names[classes[n] - 1]`), score, outline rings (holes
    filled), bbox `[x, y, w, h]` and area in pixels. The outlines are those of `mask_to_polygons`
    on each object's mask, traced for all objects in one pass over the label image
    (`kernels.trace_outlines`); an object with a hole and several pieces takes `mask_to_polygons`'
    own path, as a piece inside the hole would vanish when the hole is filled.
    """
    labels = np.ascontiguousarray(instances.labels, dtype=np.int32)
    scored = np.flatnonzero(instances.scores[1:] >= score_floor) + 1
    vertices, ring_starts, ring_target, areas, boxes, awkward = trace_outlines(
        labels, scored, instances.count
    )
    coordinates = (vertices.ravel() * 0.5).tolist()
    bounds = (2 * ring_starts).tolist()
    rings: list[list[list[float]]] = [[] for _ in range(scored.size)]
    for ring, target in enumerate(ring_target.tolist()):
        rings[target].append(coordinates[bounds[ring] : bounds[ring + 1]])
    # Python values once for all objects (a numpy scalar per field and object costs more).
    present = np.flatnonzero(areas > 0)
    targets = scored[present].tolist()
    categories = [class_names[value - 1] for value in instances.classes[scored[present]].tolist()]
    scores = np.clip(instances.scores[scored[present]].astype(np.float64), 0.0, 1.0).tolist()
    object_boxes = boxes[present].tolist()
    object_areas = areas[present].astype(np.float64).tolist()
    awkward_list = awkward[present].tolist()
    objects = []
    for index, label in enumerate(targets):
        top, left, bottom, right = object_boxes[index]
        segmentation = rings[present[index]]
        if awkward_list[index]:
            segmentation = _rings(labels[top:bottom, left:right] == label, x0=left, y0=top)
        # Built without validation: every value is already the Python float (or str) of its field,
        # in range (scores clipped, areas and boxes counted), which validating would only check.
        objects.append(
            PredictedObject.model_construct(
                category=categories[index],
                score=scores[index],
                segmentation=segmentation,
                bbox=[float(left), float(top), float(right - left), float(bottom - top)],
                area=object_areas[index],
            )
        )
    return objects
