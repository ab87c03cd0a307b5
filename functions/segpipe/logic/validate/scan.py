"""The annotation scan: one pass that sorts every annotation into valid (per image), broken (per
reason) or ignored, and keeps the valid ones in the compact form the manifests are written from.

The work per annotation is a few attribute reads, the geometry of its rings, and one
serialisation of its segmentation: the manifests embed those bytes as they are (an
`orjson.Fragment`), so the parsed coordinates, most of the memory a large dataset takes, are
dropped chunk by chunk.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson
import pydantic_core
from msgspec import UNSET

from segpipe.logic.split import PlannedAnnotation
from segpipe.logic.validate.geometry import Geometry, polygon_geometry, ring_geometry, rle_geometry
from segpipe.logic.validate.loading import Chunk, Fields
from segpipe.logic.validate.thresholds import EXAMPLES
from segpipe.models.coco import CocoImage, Polygons, Rle


@dataclass(frozen=True)
class Scope:
    """What decides an annotation's fate: the images it may lie on, the classes it may have."""

    completed: Sequence[CocoImage]
    unfinished_ids: set[int]
    included_ids: set[int]
    excluded_ids: set[int]
    patch: int
    """The preset's ViT patch in pixels: objects narrower than half of it are tiny."""
    edge_tolerance: float
    """How far outside its image a vertex may lie."""


class Slot:
    """A completed image and its valid included annotations."""

    __slots__ = ("annotations", "bottom", "height", "right", "width")

    def __init__(self, width: int, height: int, *, tolerance: float) -> None:
        self.width = width
        self.height = height
        self.right = width + tolerance  # the furthest a vertex may lie
        self.bottom = height + tolerance
        self.annotations: list[PlannedAnnotation] = []


@dataclass
class Scan:
    slots: dict[int, Slot]
    areas: dict[int, list[float]]
    """Per included category id: the area of each valid annotation."""
    image_ids: dict[int, list[int]]
    """Per included category id: the image id of each valid annotation."""
    ids: list[int] = field(default_factory=list)
    """The id of every annotation in the file, in file order."""
    tiny: Counter[int] = field(default_factory=Counter)
    excluded: Counter[int] = field(default_factory=Counter)
    broken: Counter[str] = field(default_factory=Counter)
    broken_examples: list[int] = field(default_factory=list)
    unfinished: int = 0
    rows: list[Row] | None = None
    """A worker's scan (`workers.py`) keeps each valid annotation here, as a `Row` in file order
    to send, instead of as a manifest record in its image's `Slot.annotations`."""

    @property
    def valid(self) -> int:
        return sum(len(areas) for areas in self.areas.values())

    @property
    def total(self) -> int:
        return len(self.ids)

    @property
    def negatives(self) -> int:
        """Completed images without a valid included annotation."""
        return sum(1 for slot in self.slots.values() if not slot.annotations)

    def reject(self, annotation: Fields, reason: str) -> None:
        self.broken[reason] += 1
        if len(self.broken_examples) < EXAMPLES:
            self.broken_examples.append(annotation.id)


def scan_annotations(chunks: Iterable[Chunk], *, scope: Scope) -> Scan:
    """Sort every annotation of `chunks` (raises `loading.Refused` for one the fast way cannot vouch for)."""
    scan = empty_scan(scope)
    for chunk in chunks:
        scan_chunk(chunk, scan=scan, scope=scope)
    return scan


def empty_scan(scope: Scope, *, rows: bool = False) -> Scan:
    """A scan that has seen no annotation yet."""
    return Scan(
        rows=[] if rows else None,
        slots={
            image.id: Slot(image.width, image.height, tolerance=scope.edge_tolerance)
            for image in scope.completed
        },
        areas={category: [] for category in scope.included_ids},
        image_ids={category: [] for category in scope.included_ids},
    )


def scan_chunk(chunk: Chunk, *, scan: Scan, scope: Scope) -> None:
    """Sort the annotations of one more chunk into `scan`."""
    slots, areas, image_ids, tiny, excluded, ids = (
        scan.slots,
        scan.areas,
        scan.image_ids,
        scan.tiny,
        scan.excluded,
        scan.ids,
    )
    included, excluded_ids, unfinished_ids = scope.included_ids, scope.excluded_ids, scope.unfinished_ids
    half_patch, tolerance = scope.patch / 2, scope.edge_tolerance
    texts = chunk.texts or [None] * len(chunk.fields)
    for annotation, segmentation, text in zip(chunk.fields, chunk.segmentations, texts, strict=True):
        ids.append(annotation.id)
        category = annotation.category_id
        if category in excluded_ids:
            excluded[category] += 1
            continue
        image_id = annotation.image_id
        slot = slots.get(image_id)
        if slot is None:
            if image_id in unfinished_ids:
                scan.unfinished += 1
            else:
                scan.reject(annotation, "unknown_image")
            continue
        if category not in included:
            scan.reject(annotation, "unknown_category")
            continue
        geometry = _geometry(segmentation, slot, tolerance=tolerance)
        if isinstance(geometry, str):
            scan.reject(annotation, geometry)
            continue
        area, x0, y0, x1, y1 = geometry
        row = planned_row(annotation, segmentation, geometry, text=text)
        if scan.rows is not None:
            scan.rows.append(row)
        else:
            slot.annotations.append(planned(row))
        areas[category].append(area)
        image_ids[category].append(image_id)
        if min(x1 - x0, y1 - y0) < half_patch:  # the DPT decoder resolves objects down to half a patch
            tiny[category] += 1


def _geometry(segmentation: Polygons | Rle, slot: Slot, *, tolerance: float) -> Geometry | str:
    """The annotation's geometry, or why it is broken."""
    if type(segmentation) is list:
        geometry = (
            ring_geometry(segmentation[0]) if len(segmentation) == 1 else polygon_geometry(segmentation)
        )
        if geometry is None:
            return "too_few_points"
    else:
        assert isinstance(segmentation, Rle)
        if tuple(segmentation.size) != (slot.height, slot.width):
            return "rle_size_mismatch"
        geometry = rle_geometry(segmentation)
        if geometry is None:
            return "malformed_rle"
    area, x0, y0, x1, y1 = geometry
    if area <= 0:
        return "zero_area"
    if x0 < -tolerance or y0 < -tolerance or x1 > slot.right or y1 > slot.bottom:
        return "outside_image"
    return geometry


#: A valid annotation's manifest values: id, image id, category id, the JSON text of its
#: segmentation, bbox, area, and iscrowd (None when the file has none).
Row = tuple[int, int, int, bytes, list[float], float, int | None]


def planned_row(
    annotation: Fields, segmentation: Polygons | Rle, geometry: Geometry, *, text: bytes | None = None
) -> Row:
    """A valid annotation's values as the manifests write them: missing `area` and `bbox` filled
    in from its geometry (shoelace area, vertex bounds), the segmentation serialised once (`text`:
    its JSON as the file writes it, where `loading.decode_chunk` kept it)."""
    area, x0, y0, x1, y1 = geometry
    given_area, bbox = annotation.area, annotation.bbox
    if text is None:
        # pydantic-core, not orjson, serialises one: orjson.dumps keeps about 8 KB of heap per call
        text = (
            pydantic_core.to_json(segmentation)
            if isinstance(segmentation, list)
            else segmentation.model_dump_json().encode()
        )
    return (
        annotation.id,
        annotation.image_id,
        annotation.category_id,
        text,
        bbox if bbox is not None else [x0, y0, x1 - x0, y1 - y0],
        given_area if given_area is not None else area,
        None if annotation.iscrowd is UNSET else annotation.iscrowd,
    )


def planned(row: Row) -> PlannedAnnotation:
    """A row as the manifests hold it; its segmentation's text is embedded as it is."""
    annotation_id, image_id, category_id, text, bbox, area, iscrowd = row
    record: PlannedAnnotation = {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": orjson.Fragment(text),
        "bbox": bbox,
        "area": area,
    }
    if iscrowd is not None:
        record["iscrowd"] = iscrowd
    return record
